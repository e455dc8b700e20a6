//! What a node knows that Redis may have lost: the mirror's entries of its own sockets, and
//! the drift flag that says Redis may disagree with them (see the module doc of `mod.rs`,
//! "Outages and failovers").

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::Value;

use crate::presence::SocketEntry;

/// `'1'` for a staff member's socket (the `{sb}:staff` set), `'0'` otherwise.
pub(super) fn staff_flag(e: &SocketEntry) -> String {
    if e.user_role.is_staff() { "1" } else { "0" }.to_owned()
}

/// The strings of a Redis array reply.
pub(super) fn strings(v: Value) -> Vec<String> {
    v.into_array()
        .into_iter()
        .filter_map(|v| v.into_string())
        .collect()
}

/// What tells a node that Redis may disagree with it.
pub(super) struct Drift {
    /// Redis may disagree with the mirror (a call failed, our state was lost, or the client
    /// reconnected, possibly to another server): resync on the next heartbeat.
    pub(super) dirty: AtomicBool,
    /// This node was out of touch (a reconnect, a failed heartbeat, its own key lapsed): until
    /// then it reaps nobody, so every peer (reconnecting with back-off, after the same outage)
    /// has a whole TTL to renew before being judged dead. A std lock, held for a copy.
    pub(super) no_reaping_until: Mutex<Option<tokio::time::Instant>>,
    /// The presence TTL.
    pub(super) ttl: Duration,
}

impl Drift {
    /// Marks Redis out of date and holds back reaping for a TTL.
    pub(super) fn out_of_touch(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        *self
            .no_reaping_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now() + self.ttl);
    }

    pub(super) fn may_reap(&self) -> bool {
        let until = *self
            .no_reaping_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_none_or(|t| tokio::time::Instant::now() >= t)
    }
}

/// One of this node's sockets, as the mirror keeps it.
pub(super) struct Mirrored {
    pub(super) entry: SocketEntry,
    /// Redis counted it (its connect script, or a resync, succeeded): its user's `online` has
    /// been announced, so a resync that restores it does not announce it again.
    pub(super) confirmed: bool,
}
