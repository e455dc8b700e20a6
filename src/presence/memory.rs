//! In-process presence for a single node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Presence, PresenceError, SocketEntry, SocketPage, Transition, UserPresence};
use crate::domain::now;

/// Presence kept in this process: exact, and gone with it.
#[derive(Default)]
pub struct MemoryPresence {
    /// One lock for all three maps, so a transition (count and last seen) is atomic; never held
    /// across an `.await`.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every socket, ordered by id so pages have a stable cursor.
    sockets: BTreeMap<String, SocketEntry>,
    /// How many sockets each online user has.
    per_user: HashMap<String, u64>,
    /// When each user's last socket went away.
    last_seen: HashMap<String, crate::domain::Timestamp>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn connect(&self, entry: &SocketEntry) -> Result<bool, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.sockets.contains_key(&entry.socket_id) {
            return Ok(false);
        }
        g.sockets.insert(entry.socket_id.clone(), entry.clone());
        let n = g.per_user.entry(entry.user_id.clone()).or_default();
        *n += 1;
        Ok(*n == 1)
    }

    async fn disconnect(&self, user_id: &str, socket_id: &str) -> Result<bool, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.sockets.remove(socket_id).is_none() {
            return Ok(false);
        }
        let Some(n) = g.per_user.get_mut(user_id) else {
            return Ok(false);
        };
        *n -= 1;
        if *n > 0 {
            return Ok(false);
        }
        g.per_user.remove(user_id);
        g.last_seen.insert(user_id.to_owned(), now());
        Ok(true)
    }

    async fn status(&self, user_id: &str) -> Result<UserPresence, PresenceError> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let sockets = g.per_user.get(user_id).copied().unwrap_or(0);
        let last_seen = if sockets == 0 {
            g.last_seen.get(user_id).copied()
        } else {
            None
        };
        Ok(UserPresence { sockets, last_seen })
    }

    async fn sockets(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SocketPage, PresenceError> {
        use std::ops::Bound;
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let start = match cursor {
            Some(c) => Bound::Excluded(c.to_owned()),
            None => Bound::Unbounded,
        };
        let mut it = g
            .sockets
            .range((start, Bound::Unbounded))
            .map(|(_, e)| e.clone());
        let entries: Vec<SocketEntry> = it.by_ref().take(limit).collect();
        let next_cursor = match (it.next(), entries.last()) {
            (Some(_), Some(last)) => Some(last.socket_id.clone()),
            _ => None,
        };
        Ok(SocketPage {
            entries,
            next_cursor,
            sockets: g.sockets.len() as u64,
            users: g.per_user.len() as u64,
        })
    }

    async fn heartbeat(&self) -> Result<Vec<Transition>, PresenceError> {
        Ok(Vec::new())
    }

    async fn withdraw_node(&self) -> Result<Vec<String>, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let users: Vec<String> = g.per_user.drain().map(|(u, _)| u).collect();
        g.sockets.clear();
        let t = now();
        for u in &users {
            g.last_seen.insert(u.clone(), t);
        }
        Ok(users)
    }

    async fn ping(&self) -> Result<(), PresenceError> {
        Ok(())
    }
}
