//! The presence seam: which sockets are connected where, and when a user as a whole goes online
//! or offline.
//!
//! [`MemoryPresence`] serves a single node; [`RedisPresence`] makes presence a cluster-wide fact.
//! Implementations decide transitions atomically: `connect` says whether this socket made its
//! user online, `disconnect` whether it left the user offline.
//!
//! A user left offline (a disconnect, a drain, a dead node reaped) is also noted as *due*: their
//! `user:status offline` is owed once the offline grace has passed, unless a socket of theirs
//! comes back first. The due announcements are kept by presence itself, not by the node that saw
//! the departure, so they outlive it (Redis in a cluster; a single node keeps them in `DATA_DIR`
//! across a drain and restart), and [`Presence::claim_due_offline`] hands each one to exactly one
//! caller.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{Role, Timestamp, rfc3339};

pub mod assignment_gate;
pub mod availability;
pub mod memory;
pub mod redis;
pub mod redis_assignment_gate;
pub mod redis_availability;

pub use assignment_gate::{AssignmentGate, Confirmed, Fence, MemoryAssignmentGate};
pub use availability::{MemoryAvailability, StaffAvailability, StaffStatus};
pub use memory::MemoryPresence;
pub use redis::RedisPresence;
pub use redis_assignment_gate::RedisAssignmentGate;
pub use redis_availability::RedisAvailability;

/// One connected socket, as `GET /api/socket/active-users` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocketEntry {
    /// Whose socket it is (the token's `id`).
    pub user_id: String,
    /// The Socket.IO socket id: the key of the entry.
    pub socket_id: String,
    /// The token's display name, listed for staff.
    pub user_name: String,
    /// The token's role, listed for staff.
    pub user_role: Role,
    /// When the handshake completed.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub connected_at: Timestamp,
    /// The node holding the socket (what a reaper removes when that node dies).
    pub node: String,
}

/// A page of the cluster's sockets.
#[derive(Debug, Clone)]
pub struct SocketPage {
    /// At most the requested number of sockets, in a stable order.
    pub entries: Vec<SocketEntry>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Sockets in the whole cluster.
    pub sockets: u64,
    /// Distinct users in the whole cluster.
    pub users: u64,
}

/// A user's presence.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPresence {
    /// Sockets the user has in the whole cluster (0: offline).
    pub sockets: u64,
    /// When the user's last socket went away (absent while online or if never seen).
    pub last_seen: Option<Timestamp>,
}

/// A user who went online or offline as a whole outside a connect or disconnect call (a dead
/// node reaped, sockets written back after an outage), for the caller to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The user who changed.
    pub user_id: String,
    /// `true`: went online; `false`: went offline.
    pub online: bool,
}

/// Why presence could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("presence unavailable: {0}")]
    Unavailable(String),
    #[error("bad cursor")]
    BadCursor,
}

/// Who is online, cluster-wide.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Registers a socket; `true` when it is its user's first socket anywhere (a transition to
    /// online) and no `offline` of theirs was still due: a user back before their offline was
    /// announced never went offline to anyone, so their due `offline` is dropped and `false`
    /// returned. Registering a socket twice changes nothing and returns `false`.
    async fn connect(&self, entry: &SocketEntry) -> Result<bool, PresenceError> {
        self.connect_marked(entry, None).await
    }
    /// [`connect`](Presence::connect), and when it makes the user online, records `mark` in
    /// the same step ([`Presence::marked`] tells it afterwards): a `user.online` pledged ahead
    /// of the connect (`webhooks/pledges.rs`) is settled from it if its node dies before
    /// writing the event.
    async fn connect_marked(
        &self,
        entry: &SocketEntry,
        mark: Option<&str>,
    ) -> Result<bool, PresenceError>;
    /// Removes a socket; `true` when it was its user's last one (a transition to offline, due
    /// for announcement after the offline grace).
    async fn disconnect(&self, user_id: &str, socket_id: &str) -> Result<bool, PresenceError>;
    async fn status(&self, user_id: &str) -> Result<UserPresence, PresenceError>;
    /// Sockets in a stable order, `limit` at a time from `cursor`.
    async fn sockets(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SocketPage, PresenceError>;
    /// Called once per heartbeat interval by one per-node task: renews this node's liveness,
    /// reaps dead nodes and repairs this node's sockets after an outage. Returns the transitions
    /// that caused, in order, for the caller to announce (each exactly once cluster-wide).
    async fn heartbeat(&self) -> Result<Vec<Transition>, PresenceError>;
    /// Removes every socket of this node (graceful drain); returns users left offline.
    async fn withdraw_node(&self) -> Result<Vec<String>, PresenceError>;
    /// Claims the users whose `offline` is due now (their grace has passed and they have no
    /// socket): each due user is returned by exactly one call, cluster-wide, and the caller
    /// announces them.
    async fn claim_due_offline(&self) -> Result<Vec<String>, PresenceError>;
    /// The users whose `offline` is due now (at most a claim's worth), read only: the caller
    /// pledges their `user.offline` and then claims them with [`Presence::claim_offline_marked`].
    async fn due_offline(&self) -> Result<Vec<String>, PresenceError>;
    /// Claims the due `offline` of these users (user, mark), as [`Presence::claim_due_offline`]
    /// does (each to exactly one caller; one back online is dropped unannounced), recording the
    /// mark of each claimed user in the same step. Returns the claimed users.
    async fn claim_offline_marked(
        &self,
        claims: &[(String, String)],
    ) -> Result<Vec<String>, PresenceError>;
    /// Whether a transition recorded `mark` (kept a day at least).
    async fn marked(&self, mark: &str) -> Result<bool, PresenceError>;
    /// Some staff member with a socket anywhere in the cluster, if there is one (a user's
    /// message in a chat with no staff participant is delivered live to them).
    async fn staff_online(&self) -> Result<Option<String>, PresenceError>;
    /// Answers when the backing service is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), PresenceError>;
}
