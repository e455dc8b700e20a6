//! What a socket carries from its handshake on, and how the handshake middleware hands it to
//! the connect handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socketioxide::socket::Sid;

use super::rate_limit::RateLimiter;
use crate::domain::{AuthUser, Timestamp};
use crate::ordering::{StageTurns, Turns};
use crate::recovery::{Claim, Pid};

/// One socket's session, made once at its handshake and shared by its handlers (one `Arc` per
/// socket: nothing here is allocated per event).
pub struct Session {
    /// Who the socket belongs to, from its verified token.
    pub user: AuthUser,
    /// When the handshake was accepted: the presence entry's `connectedAt`.
    pub connected_at: Timestamp,
    /// The socket's event budget (`RATE_LIMIT_PER_SEC`).
    pub limiter: RateLimiter,
    /// Keeps the socket's events in arrival order (see [`Turns`]).
    pub turns: Turns,
    /// Keeps the socket's events' saves, log appends and broadcasts in the same order (see
    /// [`EmitOrder`](crate::ordering::EmitOrder)).
    pub stages: StageTurns,
    /// Set when the socket disconnects, before it leaves presence: a registration that
    /// finishes after it (a late `user:online`) sees it and takes the socket out again.
    gone: AtomicBool,
    /// Its connection state recovery session (`None` when recovery is off).
    pub pid: Option<Pid>,
}

impl Session {
    /// A new socket's session, its turns all free.
    pub fn new(user: AuthUser, rate_limit_per_sec: u32, pid: Option<Pid>) -> Self {
        Session {
            user,
            connected_at: crate::domain::now(),
            limiter: RateLimiter::new(rate_limit_per_sec),
            turns: Turns::default(),
            stages: StageTurns::default(),
            gone: AtomicBool::new(false),
            pid,
        }
    }

    /// Marks the socket as disconnected (for good: a recovered socket gets a new session).
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }

    /// Has the socket disconnected?
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }
}

/// What the handshake middleware hands to the connect handler: the socket's session and, for a
/// socket resuming a recovery session, what the middleware accepted.
pub struct Accepted {
    pub session: Arc<Session>,
    pub resume: Option<Claim>,
    /// For a resume: the socket's first event turn, held until the replay is written, so its
    /// client's first events are handled (and acked) after it.
    pub replay_turn: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Handshakes passed from the middleware to the connect handler, by socket.
#[derive(Default)]
pub struct Handshakes(std::sync::Mutex<HashMap<Sid, Accepted>>);

impl Handshakes {
    pub fn insert(&self, sid: Sid, accepted: Accepted) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid, accepted);
    }

    pub fn take(&self, sid: Sid) -> Option<Accepted> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sid)
    }
}
