//! A socket's admission on this node: its place in the user's `MAX_SOCKETS_PER_USER` count, its
//! pending handshake, its token-expiry watch and its place in the connected-sockets gauge,
//! given back exactly once however the socket ends.
//!
//! The handshake middleware counts the socket before the `CONNECT` answer is sent, and its
//! disconnect handler used to be the only place that gave the count back. socketioxide runs
//! that handler only for a socket that entered the namespace: a client that hangs up while
//! the middleware runs (its `CONNECT` answer cannot be sent) never gets one, and its count used
//! to stay until the node restarted (issue 25, item 3: a user locked out with `RATE_LIMITED`
//! after a few dozen hang-ups, and counted as present for delivery). The [`Admission`] is a
//! guard: the disconnect handler releases it, and whatever else ends the handshake drops it,
//! which releases it too (the middleware returning early drops it at once; a socket that never
//! entered the namespace drops its handlers, and the guard with them).

use std::sync::atomic::{AtomicBool, Ordering};

use socketioxide::socket::Sid;

use crate::state::{AppState, SocketKey};

/// One admitted socket's hold on the node's per-socket bookkeeping (see the module docs).
pub struct Admission {
    state: AppState,
    sid: Sid,
    /// The user's count in `UserLimits`.
    key: SocketKey,
    /// The token expiry watched for the socket (set when it is wired).
    expiry: Option<u32>,
    /// Whether the socket is in the connected-sockets gauge (set when it is wired).
    counted: bool,
    /// Set by the first release: a guard released by the disconnect handler and dropped later
    /// gives nothing back twice.
    released: AtomicBool,
}

impl Admission {
    /// Holds the place `add_socket` gave socket `sid` under `key`.
    pub fn new(state: &AppState, sid: Sid, key: SocketKey) -> Admission {
        Admission {
            state: state.clone(),
            sid,
            key,
            expiry: None,
            counted: false,
            released: AtomicBool::new(false),
        }
    }

    /// The socket is wired: it counts in the gauge, and its token expiry (if any) is watched.
    pub fn wired(&mut self, expiry: Option<u32>) {
        self.state.metrics.sockets_connected.inc();
        self.counted = true;
        self.expiry = expiry;
    }

    /// Gives everything back, once: the user's socket count, a handshake the connect handler
    /// never took, the expiry watch and the gauge.
    pub fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = &self.state;
        state.user_limits.release(self.key);
        state.handshakes.take(self.sid);
        if let Some(deadline) = self.expiry {
            state.expiries.forget(self.sid, deadline);
        }
        if self.counted {
            state.metrics.sockets_connected.dec();
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release();
    }
}
