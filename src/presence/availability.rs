//! Staff availability (PROTOCOL.md, "The support desk"): part of presence, a second small seam
//! beside [`super::Presence`]. A staff member is `available` from their first socket on
//! (unless they said `away` in this presence session), `away` once they say so, and forgotten
//! (`offline`) when their presence ends. [`MemoryAvailability`] serves a single node,
//! [`super::RedisAvailability`] the cluster; both decide transitions atomically, so each one is
//! announced once.
//!
//! The count of available staff flips `support:availability` for users, at most once per
//! interval cluster-wide: [`StaffAvailability::claim_announcement`] decides who sends it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::PresenceError;

/// What a staff member said (or the default of their first socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffStatus {
    Available,
    Away,
}

impl StaffStatus {
    /// Parses the `status` of `staff:availability`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "available" => Some(Self::Available),
            "away" => Some(Self::Away),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Away => "away",
        }
    }
}

/// What [`StaffAvailability::claim_announcement`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// The value last announced is already this one: nothing to send.
    Unchanged,
    /// This caller sends it now (and it is recorded as announced).
    Send,
    /// One went out less than the interval ago: ask again when it has passed.
    Later,
}

/// Who of the staff is available, cluster-wide.
#[async_trait]
pub trait StaffAvailability: Send + Sync + 'static {
    /// A staff socket connected: the member becomes `available` unless they have a status
    /// already (an `away` kept through a reload); `true` when that is a transition.
    async fn staff_connected(&self, user_id: &str) -> Result<bool, PresenceError>;
    /// Sets a member's status; `true` when it changed.
    async fn set(&self, user_id: &str, status: StaffStatus) -> Result<bool, PresenceError>;
    /// Forgets the members among `user_ids` whose presence ended; returns those who had a
    /// status (they are now `offline`).
    async fn forget(&self, user_ids: &[String]) -> Result<Vec<String>, PresenceError>;
    /// A member's status, `None` when offline (or not staff).
    async fn status(&self, user_id: &str) -> Result<Option<StaffStatus>, PresenceError>;
    /// How many staff are available.
    async fn available(&self) -> Result<u64, PresenceError>;
    /// Who of the staff is available (auto-assignment's candidates; never shown to clients).
    async fn available_staff(&self) -> Result<Vec<String>, PresenceError>;
    /// Whether this caller should announce `available` to users now: not if it is what was
    /// last announced, nor within `every` of the last announcement anywhere.
    async fn claim_announcement(
        &self,
        available: bool,
        every: Duration,
    ) -> Result<Announcement, PresenceError>;
}

/// A single node's availability, in memory.
#[derive(Default)]
pub struct MemoryAvailability {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    statuses: HashMap<String, StaffStatus>,
    /// The value last announced to users, and when.
    announced: Option<(bool, Instant)>,
}

impl MemoryAvailability {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl StaffAvailability for MemoryAvailability {
    async fn staff_connected(&self, user_id: &str) -> Result<bool, PresenceError> {
        let mut g = self.lock();
        if g.statuses.contains_key(user_id) {
            return Ok(false);
        }
        g.statuses
            .insert(user_id.to_owned(), StaffStatus::Available);
        Ok(true)
    }

    async fn set(&self, user_id: &str, status: StaffStatus) -> Result<bool, PresenceError> {
        Ok(self.lock().statuses.insert(user_id.to_owned(), status) != Some(status))
    }

    async fn forget(&self, user_ids: &[String]) -> Result<Vec<String>, PresenceError> {
        let mut g = self.lock();
        Ok(user_ids
            .iter()
            .filter(|u| g.statuses.remove(u.as_str()).is_some())
            .cloned()
            .collect())
    }

    async fn status(&self, user_id: &str) -> Result<Option<StaffStatus>, PresenceError> {
        Ok(self.lock().statuses.get(user_id).copied())
    }

    async fn available(&self) -> Result<u64, PresenceError> {
        Ok(self
            .lock()
            .statuses
            .values()
            .filter(|s| **s == StaffStatus::Available)
            .count() as u64)
    }

    async fn available_staff(&self) -> Result<Vec<String>, PresenceError> {
        Ok(self
            .lock()
            .statuses
            .iter()
            .filter(|(_, s)| **s == StaffStatus::Available)
            .map(|(u, _)| u.clone())
            .collect())
    }

    async fn claim_announcement(
        &self,
        available: bool,
        every: Duration,
    ) -> Result<Announcement, PresenceError> {
        let mut g = self.lock();
        // Nobody was announced available before the first announcement.
        let (last, at) = g.announced.map_or((false, None), |(v, at)| (v, Some(at)));
        if last == available {
            return Ok(Announcement::Unchanged);
        }
        if at.is_some_and(|at| at.elapsed() < every) {
            return Ok(Announcement::Later);
        }
        g.announced = Some((available, Instant::now()));
        Ok(Announcement::Send)
    }
}
