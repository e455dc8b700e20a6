//! The node's shared state: what every REST handler, socket event and background task of one
//! node reads, handed around as one cheap-to-clone [`AppState`].
//!
//! Below `service`, `http` and `realtime`: it holds the seams (store, presence, fan-out) as
//! traits and knows no concrete backend (`app.rs` picks those and builds the state) and no
//! transport. The per-socket session, the rate limiter, the typing map, the token expiries and
//! the readiness inputs live here too, because the state holds them and both the use cases and the socket layer use
//! them.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

use crate::auth::{Keys, Verifier};
use crate::cluster::Fanout;
use crate::config::Config;
use crate::connections::TcpConnections;
use crate::metrics::Metrics;
use crate::metrics::StoreMetrics;
use crate::presence::{AssignmentGate, Presence, StaffAvailability};
use crate::recovery::Recovery;
use crate::store::{Store, StoreObserver, StoreOp, TimedStore};

pub mod delivery;
pub mod directory;
pub mod drain;
pub mod expiry;
pub mod rate_limit;
pub mod readiness;
pub mod session;
#[cfg(any(test, feature = "test-support"))]
pub mod test_hooks;
pub mod typing;
pub mod upload_budget;
pub mod user_limits;

pub use delivery::{
    DeliveryTracker, Mark as DeliveryMark, Pending as DeliveryPending, Trigger as DeliveryTrigger,
};
pub use expiry::TokenExpiries;
pub use session::{Accepted, Handshakes, Session};
pub use typing::TypingTracker;
pub use user_limits::{SocketKey, UserLimits};

/// Everything a handler needs, shared by the REST router and every socket. Cheap to clone (one
/// `Arc`), so each socket's context carries it for one pointer.
#[derive(Clone)]
pub struct AppState(Arc<NodeState>);

/// The node's shared parts, behind [`AppState`].
pub struct NodeState {
    /// Every setting, read by handlers for limits and timings.
    pub config: Config,
    /// This node's name in presence and metrics.
    pub node_id: String,
    /// Where chats, messages, reports and uploads are kept (embedded or MongoDB).
    pub store: Arc<dyn Store>,
    /// Who is online, on this node or cluster-wide.
    pub presence: Arc<dyn Presence>,
    /// Which staff are available (the support desk), beside presence.
    pub availability: Arc<dyn StaffAvailability>,
    /// One coalesced `support:availability` re-check pending on this node at a time.
    pub support_recheck: AtomicBool,
    /// One auto-assignment pass at a time, cluster-wide (`service/desk/assignment.rs`).
    pub assignment_gate: Arc<dyn AssignmentGate>,
    /// Wakes this node's assigner (a chat queued, a staff member available, a chat closed).
    pub assigner_wake: tokio::sync::Notify,
    /// Held while this node runs assignment passes: a drain waits for it, then gives the
    /// gate up.
    pub assigning: tokio::sync::Mutex<()>,
    /// Room emissions, through whichever adapter `app.rs` chose.
    pub fanout: Arc<dyn Fanout>,
    /// Closes this node's sockets when it drains.
    pub sockets: Arc<dyn LocalSockets>,
    /// Connection state recovery's sessions and log (`None` with `RECOVERY_WINDOW_SECS=0`).
    pub recovery: Option<Arc<Recovery>>,
    /// The main listener's TCP connections, closed in paced batches when the node drains.
    pub connections: TcpConnections,
    /// Sessions of sockets past the handshake middleware whose connect handler has not run yet
    /// (a socket's own extension map would cost about 150 bytes for its whole life).
    pub handshakes: Handshakes,
    /// The JWT verifier and the file URL signer.
    pub keys: Keys,
    /// Every Prometheus metric of the node.
    pub metrics: Metrics,
    /// The node's active typing indicators (one map and one sweeper, not a timer per socket).
    pub typing: TypingTracker,
    /// Delivery triggers waiting for their coalesced store write (`service/delivery.rs`).
    pub delivery: DeliveryTracker,
    /// When each live socket's token expires (one index and one sweeper, not a timer per
    /// socket).
    pub expiries: TokenExpiries,
    /// Each user's REST write budget and socket count on this node.
    pub user_limits: UserLimits,
    /// Upload bytes being saved on this node, per user (the upload budget counts them).
    pub uploads_in_flight: upload_budget::UploadsInFlight,
    /// Whether the store and Redis answer, kept current by a watcher: what `/readyz` reads.
    pub readiness: readiness::Readiness,
    /// One claim of due `offline` announcements at a time (`service/presence.rs`).
    pub offline_claims: OfflineClaims,
    /// Records the role each identity's tokens name (the removal rule reads it).
    pub directory: directory::Directory,
    /// Where webhook events are published (off until `app.rs` starts the webhooks).
    pub webhooks: crate::webhooks::Publisher,
    /// Races a test needs to happen every time (`test-support` only).
    #[cfg(any(test, feature = "test-support"))]
    pub test_hooks: test_hooks::TestHooks,
    /// Whether a drain started (`/readyz` turns 503, handshakes are refused), and the client
    /// events being handled now, which a drain waits for (with the fan-out's unconfirmed
    /// emissions).
    pub drain: drain::Drain,
}

impl Deref for AppState {
    type Target = NodeState;
    fn deref(&self) -> &NodeState {
        &self.0
    }
}

/// The node's claims of due `offline` announcements: one round at a time; a departure during a
/// round asks for another instead of starting its own (so a storm of departures is a few
/// rounds, each announcing its users with one batched read of their chat partners).
#[derive(Default)]
pub struct OfflineClaims {
    pub running: tokio::sync::Mutex<()>,
    pub wanted: AtomicBool,
}

/// What the state is built from; `app.rs` fills it in once it has chosen the backends.
pub struct Backends {
    pub config: Config,
    pub node_id: String,
    pub store: Arc<dyn Store>,
    pub presence: Arc<dyn Presence>,
    pub availability: Arc<dyn StaffAvailability>,
    pub assignment_gate: Arc<dyn AssignmentGate>,
    pub fanout: Arc<dyn Fanout>,
    pub sockets: Arc<dyn LocalSockets>,
    pub recovery: Option<Arc<Recovery>>,
    pub keys: Keys,
}

impl AppState {
    /// The state of a node that is not draining and handles no event yet. The store is seen
    /// through [`TimedStore`], which times every operation into the store metrics.
    pub fn new(b: Backends) -> Self {
        let metrics = Metrics::with_heartbeat_interval(&b.node_id, b.config.heartbeat_interval);
        let readiness = readiness::Readiness::default();
        let drain = drain::Drain::new(metrics.draining.clone());
        let timing = StoreTiming {
            operations: StoreOp::ALL
                .iter()
                .map(|&op| metrics.store_operation(op).clone())
                .collect(),
            answers: readiness.store.clone(),
        };
        let store: Arc<dyn Store> = Arc::new(TimedStore::new(b.store, timing));
        AppState(Arc::new(NodeState {
            directory: directory::Directory::new(store.clone()),
            metrics,
            fanout: b.fanout,
            sockets: b.sockets,
            recovery: b.recovery,
            node_id: b.node_id,
            store,
            presence: b.presence,
            availability: b.availability,
            support_recheck: AtomicBool::new(false),
            assignment_gate: b.assignment_gate,
            assigner_wake: tokio::sync::Notify::new(),
            assigning: tokio::sync::Mutex::new(()),
            keys: b.keys,
            typing: TypingTracker::default(),
            delivery: DeliveryTracker::default(),
            expiries: TokenExpiries::default(),
            user_limits: UserLimits::new(
                b.config.rate_limit_per_sec,
                b.config.recovery_resumes_per_min,
            ),
            uploads_in_flight: upload_budget::UploadsInFlight::default(),
            readiness,
            offline_claims: OfflineClaims::default(),
            webhooks: crate::webhooks::Publisher::default(),
            #[cfg(any(test, feature = "test-support"))]
            test_hooks: test_hooks::TestHooks::default(),
            drain,
            connections: TcpConnections::default(),
            handshakes: Handshakes::default(),
            config: b.config,
        }))
    }
}

/// Where the store's timings go: its metrics, and the readiness mark every answer sets (a
/// probe that times out while real operations succeed found the store slow, not down).
struct StoreTiming {
    /// Indexed like [`StoreOp::ALL`].
    operations: Vec<StoreMetrics>,
    answers: Arc<readiness::Watched>,
}

impl StoreObserver for StoreTiming {
    fn observe(&self, op: StoreOp, elapsed: std::time::Duration, ok: bool) {
        let m = &self.operations[op as usize];
        m.duration.observe(elapsed.as_secs_f64());
        if ok {
            self.answers.note_answer();
        } else {
            m.errors.inc();
        }
    }
}

/// The REST extractor of [`crate::domain::AuthUser`] finds the verifier through this.
impl AsRef<Verifier> for AppState {
    fn as_ref(&self) -> &Verifier {
        &self.keys.verifier
    }
}

/// This node's own sockets, whatever the adapter.
pub trait LocalSockets: Send + Sync + 'static {
    /// Closes the connection of every local socket; resolves when they are closed.
    fn close_all(&self) -> futures_util::future::BoxFuture<'_, ()>;
    /// The user id of some socket of this node in `room`, if there is one (a live delivery to
    /// staff checks `admins` here first).
    fn user_in_room(&self, room: &str) -> Option<String>;
    /// Closes one socket's transport, so that its client reconnects (its token expired);
    /// `false` if the socket is not here any more.
    fn close_transport(&self, sid: socketioxide::socket::Sid) -> bool;
    /// Closes the transport of every socket of this node at once (each client reconnects and
    /// resumes its session); how many there were.
    fn close_transports(&self) -> usize;
    /// Disconnects every socket of `user_id` on every node (through the adapter), with a
    /// namespace disconnect, so socket.io-client does not reconnect by itself; without
    /// `staff_too`, only the user's sockets outside `admins` (the support desk's removals).
    fn disconnect_user(
        &self,
        user_id: &str,
        staff_too: bool,
    ) -> futures_util::future::BoxFuture<'_, Result<(), String>>;
}

impl<A: Adapter> LocalSockets for SocketIo<A> {
    /// Closes the transports, not the namespace sockets: a client told "io server disconnect"
    /// (a namespace disconnect) never reconnects on its own, while one that loses its
    /// transport reconnects, with its client's randomized back-off spreading the reconnects.
    fn close_all(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.close())
    }

    /// Every socket is in its own `user:{id}` room, which names its user.
    fn user_in_room(&self, room: &str) -> Option<String> {
        let ns = self.of("/")?;
        ns.local()
            .to(room.to_owned())
            .sockets()
            .into_iter()
            .find_map(|s| {
                s.rooms()
                    .into_iter()
                    .find_map(|r| r.strip_prefix("user:").map(str::to_owned))
            })
    }

    /// The transport, not the namespace socket, for the reason given at `close_all`.
    fn close_transport(&self, sid: socketioxide::socket::Sid) -> bool {
        let Some(socket) = self.of("/").and_then(|ns| ns.get_socket(sid)) else {
            return false;
        };
        socket.close_transport();
        true
    }

    fn close_transports(&self) -> usize {
        let Some(ns) = self.of("/") else {
            return 0;
        };
        let sockets = ns.local().sockets();
        for socket in &sockets {
            socket.close_transport();
        }
        sockets.len()
    }

    fn disconnect_user(
        &self,
        user_id: &str,
        staff_too: bool,
    ) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        let room = crate::cluster::rooms::user(user_id);
        Box::pin(async move {
            let op = self.to(room);
            let op = if staff_too {
                op
            } else {
                op.except(crate::cluster::rooms::ADMINS)
            };
            op.disconnect().await.map_err(|e| e.to_string())
        })
    }
}
