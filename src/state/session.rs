//! What a socket carries from its handshake on, and how the handshake middleware hands it to
//! the connect handler.

use std::collections::HashMap;
use std::sync::Arc;

use socketioxide::socket::Sid;

use super::rate_limit::RateLimiter;
use crate::domain::{AuthUser, Timestamp};
use crate::ordering::Turns;

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
    /// Keeps the socket's events' saves in the same order (see
    /// [`EmitOrder`](crate::ordering::EmitOrder)).
    pub save_turns: Turns,
    /// Keeps the socket's events' emissions in the same order.
    pub emit_turns: Turns,
}

impl Session {
    /// A new socket's session, its turns all free.
    pub fn new(user: AuthUser, rate_limit_per_sec: u32) -> Self {
        Session {
            user,
            connected_at: crate::domain::now(),
            limiter: RateLimiter::new(rate_limit_per_sec),
            turns: Turns::default(),
            save_turns: Turns::default(),
            emit_turns: Turns::default(),
        }
    }
}

/// Sessions handed from the handshake middleware to the connect handler, by socket.
#[derive(Default)]
pub struct Handshakes(std::sync::Mutex<HashMap<Sid, Arc<Session>>>);

impl Handshakes {
    pub fn insert(&self, sid: Sid, session: Arc<Session>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid, session);
    }

    pub fn take(&self, sid: Sid) -> Option<Arc<Session>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sid)
    }
}
