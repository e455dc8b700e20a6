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
//! [`AssignmentHook::changed`] once saved and announced: the one place to record it.

use std::collections::HashSet;
use std::time::Duration;

use crate::config::AssignmentSettings;
use crate::domain::{Actor, Chat, ChatStatus, Timestamp, now};
use crate::metrics::Metrics;
use crate::presence::{AssignmentGate, Confirmed, PresenceError, StaffAvailability};
use crate::service::desk::chat_events::ChatEvents;
use crate::service::emit::Emitter;
use crate::state::drain::Drain;
#[cfg(any(test, feature = "test-support"))]
use crate::state::test_hooks::TestHooks;
use crate::state::{AppState, NodeState};
use crate::store::{AgentLoad, Assign, Store, StoreError};
use crate::webhooks::Pledged;

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

/// What the use cases that change a chat's assignment (or free a staff member) tell the
/// assigner.
#[derive(Clone, Copy)]
pub struct AssignmentHook<'a> {
    /// `ASSIGNMENT`: in `manual` mode there is no assigner to wake.
    settings: &'a AssignmentSettings,
    /// Assignments, counted by who made them.
    metrics: &'a Metrics,
    /// This node's assigner waits on it.
    assigner: &'a tokio::sync::Notify,
}

impl<'a> AssignmentHook<'a> {
    /// The node's assignment hook.
    pub fn of(node: &'a NodeState) -> Self {
        AssignmentHook {
            settings: &node.config.assignment,
            metrics: &node.metrics,
            assigner: &node.assigner_wake,
        }
    }

    /// Asks this node's assigner for a pass (coalesced: many asks, one pass). Nothing in
    /// `manual` mode.
    pub fn wake(&self) {
        if self.settings.is_auto() {
            self.assigner.notify_one();
        }
    }

    /// Every change of a chat's assigned admin or status goes through here once it is saved
    /// and announced (`chat:updated`), `by` the acting staff member's id or [`SYSTEM`]: it is
    /// counted, a closed assigned chat frees a place in the queue's favour, and a reopened
    /// chat back in the queue waits for a pass. (The audit log records assignments in
    /// `announce_chat_updated`.)
    pub fn changed(&self, before: &Chat, after: &Chat, by: &str) {
        if after.assigned_admin.is_some() && before.assigned_admin != after.assigned_admin {
            self.metrics.desk.assigned(by == SYSTEM);
        }
        let freed = before.status == ChatStatus::Open
            && after.status == ChatStatus::Closed
            && after.assigned_admin.is_some();
        let queued = before.queued_at.is_none() && after.queued_at.is_some();
        if freed || queued {
            self.wake();
        }
    }
}

/// This node's assigner: one pass attempt per wake, and one per [`TICK`], until the node
/// stops. Started by `app.rs` in `auto` mode only.
pub async fn run_assigner(state: AppState) {
    let assigner = Assigner::of(&state);
    let mut wanted = true;
    loop {
        assigner.round(wanted).await;
        wanted = tokio::select! {
            () = state.assigner_wake.notified() => true,
            () = tokio::time::sleep(TICK) => false,
        };
    }
}

/// At a drain: waits a moment (at most [`DRAIN_WAIT`], and not past `deadline`) for a pass
/// of this node to end, then gives the gate up if this node still holds it, so the other
/// nodes assign at once rather than after its lease. A pass still running then (a store
/// write hanging) is overlapped safely: the store counts the agent's load in the write
/// itself, and its next gate check finds the gate lost. No pass starts on a draining node.
pub async fn release_assignment_gate(node: &NodeState, deadline: tokio::time::Instant) {
    if !node.config.assignment.is_auto() {
        return;
    }
    let wait = deadline.min(tokio::time::Instant::now() + DRAIN_WAIT);
    if tokio::time::timeout_at(wait, node.assigning.lock())
        .await
        .is_err()
    {
        tracing::warn!(node = %node.node_id, "an assignment pass still runs at the drain; the gate is given up under it");
    }
    if let Err(e) = node.assignment_gate.release().await {
        tracing::warn!(error = %e, "could not give the assignment gate up");
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

/// A node's assigner: what a pass reads and writes.
struct Assigner<'a> {
    /// The queue, the agents' loads, and the assignments themselves.
    store: &'a dyn Store,
    /// Who is available now.
    availability: &'a dyn StaffAvailability,
    /// One pass at a time, cluster-wide.
    gate: &'a dyn AssignmentGate,
    /// The capacity and the reassignment clock.
    settings: &'a AssignmentSettings,
    /// Passes, the queue, requeues.
    metrics: &'a Metrics,
    /// Each assignment's `chat:updated` (and its audit entry).
    events: ChatEvents<'a>,
    /// Each assignment, counted.
    hook: AssignmentHook<'a>,
    /// Each change's webhook, pledged ahead of its save.
    emitter: Emitter<'a>,
    /// A draining node starts no pass, and gives the gate up after its current one.
    drain: &'a Drain,
    /// Held while this node runs passes: a drain waits for it before giving the gate up.
    running: &'a tokio::sync::Mutex<()>,
    /// A pass stalled before its assignment write (`test-support` only).
    #[cfg(any(test, feature = "test-support"))]
    test_hooks: &'a TestHooks,
}

impl<'a> Assigner<'a> {
    fn of(node: &'a NodeState) -> Self {
        Assigner {
            store: &*node.store,
            availability: &*node.availability,
            gate: &*node.assignment_gate,
            settings: &node.config.assignment,
            metrics: &node.metrics,
            events: ChatEvents::of(node),
            hook: AssignmentHook::of(node),
            emitter: Emitter::of(node),
            drain: &node.drain,
            running: &node.assigning,
            #[cfg(any(test, feature = "test-support"))]
            test_hooks: &node.test_hooks,
        }
    }

    /// Runs passes while this node holds the gate and passes are asked for; `wanted` asks the
    /// running pass elsewhere for another when the gate is taken.
    async fn round(&self, wanted: bool) {
        let _running = self.running.lock().await;
        // A draining node starts no pass: the others' do (see `release_assignment_gate`).
        if self.drain.is_draining() {
            return;
        }
        let fence = match self.gate.begin(wanted).await {
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
            if let Err(e) = self.pass(fence.token).await {
                tracing::warn!(error = %e, "assignment pass stopped");
            }
            if self.drain.is_draining() {
                // Given up now, not when the lease lapses: another node's tick runs the
                // pass asked for meanwhile.
                if let Err(e) = self.gate.release().await {
                    tracing::warn!(error = %e, "could not give the assignment gate up");
                }
                return;
            }
            match self.gate.end().await {
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

    /// One pass: departed staff's chats back to the queue, then the queue to staff.
    async fn pass(&self, fence: u64) -> Result<(), PassError> {
        self.metrics.desk.passes.inc();
        if !self.settings.reassign_after.is_zero() {
            self.requeue_departed(fence).await?;
        }
        let capacity = u64::from(self.settings.max_open_chats_per_agent);
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
                match self.gate.confirm(&loads[i].agent).await? {
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
                match self.emitter.saved(assigned, &pledged).await? {
                    Some(after) => {
                        loads[i].open += 1;
                        loads[i].last_assigned = Some(at);
                        self.events
                            .announce_chat_updated(&chat, &after, &Actor::system(), pledged)
                            .await;
                        self.hook.changed(&chat, &after, SYSTEM);
                    }
                    None => {
                        self.emitter.unpledge(pledged).await;
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
        let since = self.gate.unavailable_since(&away, t).await?;
        let after = chrono::Duration::from_std(self.settings.reassign_after)
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
            match self.gate.confirm(&agent).await? {
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
            match self.emitter.saved(requeued, &pledged).await? {
                Some(after) => {
                    self.metrics.desk.requeued.inc();
                    self.events
                        .announce_chat_updated(&chat, &after, &Actor::system(), pledged)
                        .await;
                    self.hook.changed(&chat, &after, SYSTEM);
                }
                None => self.emitter.unpledge(pledged).await,
            }
        }
        Ok(())
    }

    /// The `chat.updated` of an assignment or a requeue by `system`, written ahead of its save
    /// (`webhooks/pledges.rs`).
    async fn pledge_system_change(&self, chat: &Chat) -> Result<Option<Pledged>, PassError> {
        let changed = ["assignedAdmin", "participants"];
        Ok(self
            .events
            .pledge_updated(&chat.id, &changed, SYSTEM)
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
