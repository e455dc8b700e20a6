//! Auto-assignment (PROTOCOL.md, "The support desk"; `ASSIGNMENT=auto`): a chat a user opens
//! is queued (`queuedAt`) and an assignment pass gives queued chats, oldest first, to the
//! available staff member with the fewest open chats below `MAX_OPEN_CHATS_PER_AGENT` (ties:
//! the one assigned least recently); the same pass puts the open chats of staff away or
//! offline for `REASSIGN_AFTER_SECS` back at the front of the queue.
//!
//! One pass runs at a time in the whole cluster ([`crate::presence::AssignmentGate`]), so
//! the loads it counts are not changed under it by another pass; before each assignment it
//! confirms that it still holds the gate and that the staff member is still available, and the
//! store writes the assignment only if the chat is still open, queued and unassigned. Each node
//! has one assigner task: woken when something on the node may let a chat be assigned (a chat
//! queued, a staff member available, an assigned chat closed), and once a second for the
//! reassignment clock and for wakes that fell on a node that died. A wake that finds another
//! node's pass running asks that pass to run once more instead.
//!
//! Every change of a chat's assigned admin, auto or by `PATCH`, goes through
//! [`AppState::assignment_changed`] once saved and announced: the one place to record it.

use std::collections::HashSet;
use std::time::Duration;

use crate::domain::{Actor, Chat, ChatStatus, Timestamp, now};
use crate::presence::{Confirmed, PresenceError};
use crate::state::AppState;
use crate::store::{AgentLoad, Assign, StoreError};
use crate::webhooks::{Check, Pledged, fresh_id};

/// `by` of the `chat:updated` an auto-assignment sends.
pub const SYSTEM: &str = "system";

/// Queued chats one pass reads at a time.
const BATCH: usize = 200;

/// How long a drain waits for this node's pass to end before giving the gate up under it.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How often each node's assigner looks without being woken.
const TICK: Duration = Duration::from_secs(1);

/// Why a pass stopped early (it is run again on the next wake or tick).
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Presence(#[from] PresenceError),
    /// A save or its webhook's pledge failed (`UNAVAILABLE`).
    #[error(transparent)]
    Unsaved(#[from] crate::error::AppError),
}

impl AppState {
    /// Asks this node's assigner for a pass (coalesced: many asks, one pass). Nothing in
    /// `manual` mode.
    pub fn wake_assigner(&self) {
        if self.config.assignment.is_auto() {
            self.assigner_wake.notify_one();
        }
    }

    /// Every change of a chat's assigned admin or status goes through here once it is saved
    /// and announced (`chat:updated`), `by` the acting staff member's id or [`SYSTEM`]: it is
    /// counted, a closed assigned chat frees a place in the queue's favour, and a reopened
    /// chat back in the queue waits for a pass. (The audit log records assignments in
    /// `announce_chat_updated`.)
    pub fn assignment_changed(&self, before: &Chat, after: &Chat, by: &str) {
        if after.assigned_admin.is_some() && before.assigned_admin != after.assigned_admin {
            self.metrics.desk.assigned(by == SYSTEM);
        }
        let freed = before.status == ChatStatus::Open
            && after.status == ChatStatus::Closed
            && after.assigned_admin.is_some();
        let queued = before.queued_at.is_none() && after.queued_at.is_some();
        if freed || queued {
            self.wake_assigner();
        }
    }
}

/// This node's assigner: one pass attempt per wake, and one per [`TICK`], until the node
/// stops. Started by `app.rs` in `auto` mode only.
pub async fn run_assigner(state: AppState) {
    let mut wanted = true;
    loop {
        state.assignment_round(wanted).await;
        wanted = tokio::select! {
            () = state.assigner_wake.notified() => true,
            () = tokio::time::sleep(TICK) => false,
        };
    }
}

/// The staff member a queued chat goes to: fewest open chats below `capacity`, then assigned
/// least recently (never assigned first), then by id (so every node would choose alike).
fn pick(loads: &[AgentLoad], capacity: u64) -> Option<usize> {
    loads
        .iter()
        .enumerate()
        .filter(|(_, l)| l.open < capacity)
        .min_by(|(_, a), (_, b)| {
            (a.open, a.last_assigned, &a.agent).cmp(&(b.open, b.last_assigned, &b.agent))
        })
        .map(|(i, _)| i)
}

impl AppState {
    /// Runs passes while this node holds the gate and passes are asked for; `wanted` asks the
    /// running pass elsewhere for another when the gate is taken.
    async fn assignment_round(&self, wanted: bool) {
        let _running = self.assigning.lock().await;
        // A draining node starts no pass: the others' do (see `release_assignment_gate`).
        if self.is_draining() {
            return;
        }
        let fence = match self.assignment_gate.begin(wanted).await {
            Ok(Some(fence)) => fence,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "assignment gate unavailable: no pass now");
                return;
            }
        };
        if fence.taken_over {
            // The pass before outlived its lease: its late writes are refused from here.
            if let Err(e) = self.store.fence_queue(fence.token).await {
                tracing::warn!(error = %e, "could not fence the queue: no pass now");
                return;
            }
        }
        loop {
            if let Err(e) = self.assignment_pass(fence.token).await {
                tracing::warn!(error = %e, "assignment pass stopped");
            }
            if self.is_draining() {
                // Given up now, not when the lease lapses: another node's tick runs the
                // pass asked for meanwhile.
                if let Err(e) = self.assignment_gate.release().await {
                    tracing::warn!(error = %e, "could not give the assignment gate up");
                }
                return;
            }
            match self.assignment_gate.end().await {
                Ok(true) => continue,
                Ok(false) => return,
                Err(e) => {
                    // The gate's lease lapses by itself.
                    tracing::warn!(error = %e, "could not end the assignment pass");
                    return;
                }
            }
        }
    }

    /// At a drain: waits a moment (at most [`DRAIN_WAIT`], and not past `deadline`) for a pass
    /// of this node to end, then gives the gate up if this node still holds it, so the other
    /// nodes assign at once rather than after its lease. A pass still running then (a store
    /// write hanging) is overlapped safely: the store counts the agent's load in the write
    /// itself, and its next gate check finds the gate lost. No pass starts on a draining node.
    pub async fn release_assignment_gate(&self, deadline: tokio::time::Instant) {
        if !self.config.assignment.is_auto() {
            return;
        }
        let wait = deadline.min(tokio::time::Instant::now() + DRAIN_WAIT);
        if tokio::time::timeout_at(wait, self.assigning.lock())
            .await
            .is_err()
        {
            tracing::warn!(node = %self.node_id, "an assignment pass still runs at the drain; the gate is given up under it");
        }
        if let Err(e) = self.assignment_gate.release().await {
            tracing::warn!(error = %e, "could not give the assignment gate up");
        }
    }

    /// One pass: departed staff's chats back to the queue, then the queue to staff.
    async fn assignment_pass(&self, fence: u64) -> Result<(), PassError> {
        self.metrics.desk.passes.inc();
        if !self.config.assignment.reassign_after.is_zero() {
            self.requeue_departed(fence).await?;
        }
        let capacity = u64::from(self.config.assignment.max_open_chats_per_agent);
        loop {
            let queue = self.store.queued_chats(BATCH).await?;
            self.note_queue(&queue);
            if queue.is_empty() {
                return Ok(());
            }
            let agents = self.availability.available_staff().await?;
            let mut loads = self.store.agent_loads(&agents).await?;
            let read = queue.len();
            let mut queue = queue.into_iter().peekable();
            while queue.peek().is_some() {
                let Some(i) = pick(&loads, capacity) else {
                    return Ok(());
                };
                match self.assignment_gate.confirm(&loads[i].agent).await? {
                    Confirmed::Assign => {}
                    Confirmed::Unavailable => {
                        loads.swap_remove(i);
                        continue;
                    }
                    Confirmed::Lost => return Ok(()),
                }
                let Some(chat) = queue.next() else { break };
                let at = now();
                let agent = &loads[i].agent;
                let pledged = self.pledge_system_change(&chat).await?;
                #[cfg(any(test, feature = "test-support"))]
                self.test_hooks.before_assignment_write().await;
                let assign = Assign {
                    chat: &chat.id,
                    agent,
                    at,
                    capacity,
                    change: pledged.as_ref().map(|p| p.id.as_str()),
                    fence,
                };
                let assigned = self.store.assign_queued(assign).await;
                match self.saved(assigned, &pledged).await? {
                    Some(after) => {
                        loads[i].open += 1;
                        loads[i].last_assigned = Some(at);
                        self.announce_chat_updated(&chat, &after, &Actor::system(), pledged)
                            .await;
                        self.assignment_changed(&chat, &after, SYSTEM);
                    }
                    None => {
                        self.webhooks.unpledge(pledged).await;
                        // The chat changed since the read, or the agent's load did (the
                        // store counts it in the write): read the load again.
                        let agent = [loads[i].agent.clone()];
                        if let Some(load) = self.store.agent_loads(&agent).await?.pop() {
                            loads[i] = load;
                        }
                    }
                }
            }
            if read < BATCH {
                return Ok(());
            }
        }
    }

    /// Puts back at the front of the queue the open chats of staff who have been away or
    /// offline for `REASSIGN_AFTER_SECS`, ahead of the oldest waiting chat, in the order they
    /// were opened.
    async fn requeue_departed(&self, fence: u64) -> Result<(), PassError> {
        let t = now();
        let holders = self.store.assignees().await?;
        let available: HashSet<String> = if holders.is_empty() {
            HashSet::new()
        } else {
            self.availability
                .available_staff()
                .await?
                .into_iter()
                .collect()
        };
        let away: Vec<String> = holders
            .into_iter()
            .filter(|h| !available.contains(h))
            .collect();
        let since = self.assignment_gate.unavailable_since(&away, t).await?;
        let after = chrono::Duration::from_std(self.config.assignment.reassign_after)
            .unwrap_or(chrono::Duration::MAX);
        let mut due: Vec<(String, Chat)> = Vec::new();
        for (agent, since) in away.iter().zip(since) {
            if t - since >= after {
                for chat in self.store.open_chats_of(agent).await? {
                    due.push((agent.clone(), chat));
                }
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        due.sort_by(|(_, a), (_, b)| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let front: Timestamp = self
            .store
            .queued_chats(1)
            .await?
            .first()
            .and_then(|c| c.queued_at)
            .map_or(t, |q| q.min(t));
        let n = due.len() as i64;
        for (k, (agent, chat)) in due.into_iter().enumerate() {
            // Still holding the gate, and the staff member did not come back meanwhile.
            match self.assignment_gate.confirm(&agent).await? {
                Confirmed::Unavailable => {}
                Confirmed::Assign => continue,
                Confirmed::Lost => return Ok(()),
            }
            let queued_at = front - chrono::Duration::milliseconds(n - k as i64);
            let pledged = self.pledge_system_change(&chat).await?;
            let change = pledged.as_ref().map(|p| p.id.as_str());
            let requeued = self
                .store
                .requeue(&chat.id, &agent, queued_at, change, fence)
                .await;
            match self.saved(requeued, &pledged).await? {
                Some(after) => {
                    self.metrics.desk.requeued.inc();
                    self.announce_chat_updated(&chat, &after, &Actor::system(), pledged)
                        .await;
                    self.assignment_changed(&chat, &after, SYSTEM);
                }
                None => self.webhooks.unpledge(pledged).await,
            }
        }
        Ok(())
    }

    /// The `chat.updated` of an assignment or a requeue by `system`, written ahead of its save
    /// (`webhooks/pledges.rs`).
    async fn pledge_system_change(&self, chat: &Chat) -> Result<Option<Pledged>, PassError> {
        let check = Check::ChatUpdated {
            chat: chat.id.as_str().to_owned(),
            changed: vec!["assignedAdmin".into(), "participants".into()],
            by: SYSTEM.to_owned(),
        };
        let key = format!("chat:{}", chat.id.as_str());
        Ok(self
            .pledge("chat.updated", fresh_id(), key, 0, check)
            .await?)
    }

    /// The queue metrics, from a pass's read.
    fn note_queue(&self, queue: &[Chat]) {
        self.metrics.desk.queue_length.set(queue.len() as i64);
        let oldest = queue.first().and_then(|c| c.queued_at).map_or(0.0, |q| {
            (now() - q).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.metrics.desk.queue_oldest_wait.set(oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(agent: &str, open: u64, last: Option<i64>) -> AgentLoad {
        AgentLoad {
            agent: agent.to_owned(),
            open,
            last_assigned: last.and_then(chrono::DateTime::from_timestamp_millis),
        }
    }

    #[test]
    fn the_fewest_open_chats_win_then_the_least_recently_assigned() {
        let loads = [
            load("a", 2, Some(1)),
            load("b", 1, Some(9)),
            load("c", 1, Some(5)),
        ];
        assert_eq!(pick(&loads, 5), Some(2));
        let never = [load("a", 0, Some(1)), load("b", 0, None)];
        assert_eq!(pick(&never, 5), Some(1), "never assigned goes first");
    }

    #[test]
    fn nobody_at_capacity_is_picked() {
        let loads = [load("a", 3, None), load("b", 3, None)];
        assert_eq!(pick(&loads, 3), None);
    }
}
