//! Auto-assignment's cluster-wide gate (PROTOCOL.md, "The support desk"): one assignment pass
//! at a time in the whole cluster, so that two nodes never both give the same staff member a
//! chat on the same count (which is how a capacity would be overrun), and a pass asked for
//! while another runs is not lost but run by the holder once more. Beside it, since when each
//! assigned staff member has been away or offline (`REASSIGN_AFTER_SECS`), kept where any
//! node's next pass finds it.
//!
//! [`MemoryAssignmentGate`] serves a single node (no Redis: the node decides alone);
//! [`super::RedisAssignmentGate`] the cluster, with the pass a lease renewed at every
//! assignment, in the same slot as the availability set it checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::PresenceError;
use super::availability::{MemoryAvailability, StaffAvailability, StaffStatus};
use crate::domain::Timestamp;

/// What [`AssignmentGate::confirm`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// This pass still holds the gate and the staff member is still available: assign.
    Assign,
    /// The staff member is no longer available (went away since the pass read the list).
    Unavailable,
    /// This pass lost the gate (it took longer than its lease): stop at once.
    Lost,
}

/// A pass's fencing token: greater than every earlier pass's. The store writes of a pass carry
/// it, so that a store which cannot count an agent's load in its write (MongoDB) refuses the
/// writes of a pass that outlived its lease (`store/assignment.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub token: u64,
    /// The pass before did not end cleanly (its lease lapsed, or its node drained under it):
    /// one of its writes may still land.
    pub taken_over: bool,
}

/// One assignment pass at a time, cluster-wide.
#[async_trait]
pub trait AssignmentGate: Send + Sync + 'static {
    /// Starts a pass if none runs: its fence when this caller runs it. Otherwise, when `wanted`
    /// (something changed: a chat queued, an agent available, a chat closed), the running pass
    /// is asked to run once more before it ends.
    async fn begin(&self, wanted: bool) -> Result<Option<Fence>, PresenceError>;
    /// Before each assignment: this pass still holds the gate (and keeps it a while longer),
    /// and `agent` is still available.
    async fn confirm(&self, agent: &str) -> Result<Confirmed, PresenceError>;
    /// Ends the pass; `true` when another was asked for meanwhile: the caller keeps the gate
    /// and runs again.
    async fn end(&self) -> Result<bool, PresenceError>;
    /// Gives the gate up if this node holds it, whatever was asked for meanwhile (a draining
    /// node: the other nodes' next tick runs the pass).
    async fn release(&self) -> Result<(), PresenceError>;
    /// Since when each of `unavailable` (staff holding open chats who are away or offline) has
    /// been seen so, in the same order, noting `now` for those seen for the first time; forgets
    /// everyone else (back, or holding nothing).
    async fn unavailable_since(
        &self,
        unavailable: &[String],
        now: Timestamp,
    ) -> Result<Vec<Timestamp>, PresenceError>;
}

/// A single node's gate, in memory.
pub struct MemoryAssignmentGate {
    availability: Arc<MemoryAvailability>,
    inner: Mutex<Gate>,
}

#[derive(Default)]
struct Gate {
    running: bool,
    again: bool,
    /// The last fencing token given (one node: passes never overlap, so never taken over).
    token: u64,
    since: HashMap<String, Timestamp>,
}

impl MemoryAssignmentGate {
    pub fn new(availability: Arc<MemoryAvailability>) -> Self {
        Self {
            availability,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl AssignmentGate for MemoryAssignmentGate {
    async fn begin(&self, wanted: bool) -> Result<Option<Fence>, PresenceError> {
        let mut g = self.lock();
        if g.running {
            g.again |= wanted;
            return Ok(None);
        }
        g.running = true;
        g.again = false;
        g.token += 1;
        Ok(Some(Fence {
            token: g.token,
            taken_over: false,
        }))
    }

    async fn confirm(&self, agent: &str) -> Result<Confirmed, PresenceError> {
        Ok(match self.availability.status(agent).await? {
            Some(StaffStatus::Available) => Confirmed::Assign,
            _ => Confirmed::Unavailable,
        })
    }

    async fn end(&self) -> Result<bool, PresenceError> {
        let mut g = self.lock();
        if std::mem::take(&mut g.again) {
            return Ok(true);
        }
        g.running = false;
        Ok(false)
    }

    async fn release(&self) -> Result<(), PresenceError> {
        let mut g = self.lock();
        g.running = false;
        g.again = false;
        Ok(())
    }

    async fn unavailable_since(
        &self,
        unavailable: &[String],
        now: Timestamp,
    ) -> Result<Vec<Timestamp>, PresenceError> {
        let mut g = self.lock();
        g.since.retain(|agent, _| unavailable.contains(agent));
        Ok(unavailable
            .iter()
            .map(|agent| *g.since.entry(agent.clone()).or_insert(now))
            .collect())
    }
}
