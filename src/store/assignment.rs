//! The support desk's auto-assignment part of the store seam: the queue of chats waiting for
//! staff, each staff member's load, and the two conditional writes that move a chat between
//! them. A supertrait of [`Store`](super::Store), implemented by both stores in files of their
//! own (`embedded/assignment.rs`, `mongo/assignment.rs`) and held to the same contract tests.
//!
//! The writes are conditional so that a chat changed since it was read (closed, assigned by a
//! `PATCH`, taken by another pass) is left alone: a chat never gets two assigned admins. Who
//! may be given how many chats is decided above, by one assignment pass at a time cluster-wide
//! (`service/desk/assignment.rs`).

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{Chat, ChatId, Timestamp};

/// A staff member's load, as auto-assignment weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLoad {
    pub agent: String,
    /// Open chats assigned to them (by anyone: a `PATCH` counts too).
    pub open: u64,
    /// When they were last given a chat (the tie-break: least recently first).
    pub last_assigned: Option<Timestamp>,
}

/// One conditional assignment ([`AssignmentStore::assign_queued`]).
#[derive(Debug, Clone, Copy)]
pub struct Assign<'a> {
    pub chat: &'a ChatId,
    pub agent: &'a str,
    /// Its `assignedAt`.
    pub at: Timestamp,
    /// The most open chats the agent may hold once it is written.
    pub capacity: u64,
    /// Recorded with the change (see [`ChatPatch::change`](crate::domain::ChatPatch)).
    pub change: Option<&'a str>,
    /// The pass's fencing token ([`crate::presence::Fence`]): a store that cannot count the
    /// load in the write refuses a chat fenced by a later pass.
    pub fence: u64,
}

#[async_trait]
pub trait AssignmentStore: Send + Sync + 'static {
    /// Open chats waiting in the queue, oldest `queuedAt` first (then id), at most `limit`.
    async fn queued_chats(&self, limit: usize) -> StoreResult<Vec<Chat>>;

    /// The load of each of `agents`, in the same order (an agent with no chat has 0 and `None`).
    async fn agent_loads(&self, agents: &[String]) -> StoreResult<Vec<AgentLoad>>;

    /// Everyone who is the assigned admin of an open chat.
    async fn assignees(&self) -> StoreResult<Vec<String>>;

    /// The open chats assigned to `agent`, oldest first.
    async fn open_chats_of(&self, agent: &str) -> StoreResult<Vec<Chat>>;

    /// Assigns a queued chat to an agent (out of the queue, the agent its staff participant),
    /// only if it is still open, queued and unassigned and the agent holds fewer open chats
    /// than the capacity, counted in the same atomic write (on MongoDB, which cannot count in
    /// a write, see `mongo/assignment.rs`); `None` otherwise.
    async fn assign_queued(&self, a: Assign<'_>) -> StoreResult<Option<Chat>>;

    /// Puts an open chat assigned to `agent` back in the queue with `queued_at` (no assigned
    /// admin, `agent` out of its participants unless they are its own user), only if it is
    /// still open and assigned to `agent`; `None` otherwise.
    /// `change` is recorded with it (see [`ChatPatch::change`](crate::domain::ChatPatch)), and
    /// the chat is fenced with `fence` (see [`AssignmentStore::fence_queue`]).
    async fn requeue(
        &self,
        chat: &ChatId,
        agent: &str,
        queued_at: Timestamp,
        change: Option<&str>,
        fence: u64,
    ) -> StoreResult<Option<Chat>>;

    /// A pass that took the gate over from one that did not end (its lease lapsed) fences
    /// every queued chat with its token, so that a write of the earlier pass still on its way
    /// is refused ([`Assign::fence`]). A no-op where the assignment write counts the load
    /// itself (SQLite): no late write can pass the capacity there.
    async fn fence_queue(&self, fence: u64) -> StoreResult<()>;

    /// Whether a write of chat `id` recorded `change` ([`ChatPatch::change`], and the same in
    /// the assignment writes) in the last day: how a webhook pledge learns its change was saved.
    ///
    /// [`ChatPatch::change`]: crate::domain::ChatPatch
    async fn chat_has_change(&self, id: &ChatId, change: &str) -> StoreResult<bool>;
}
