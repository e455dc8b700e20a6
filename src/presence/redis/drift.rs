//! What a node knows that Redis may have lost: the mirror's entries of its own sockets, and
//! the drift flag that says Redis may disagree with them (see the module doc of `mod.rs`,
//! "Outages and failovers").

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::Value;

use crate::domain::{Role, Timestamp};
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

/// One of this node's sockets, as the mirror keeps it: what its [`SocketEntry`] is made from,
/// without the copies a whole entry would hold for the socket's life (its socket id is the
/// mirror's key, its node is this node, and its name is most often its user id): about 200
/// bytes less per idle socket (`loadtest/journal/2026-12-08-memory.md`).
pub(super) struct Mirrored {
    user_id: Box<str>,
    /// The display name, when it is not the user id.
    user_name: Option<Box<str>>,
    user_role: Role,
    connected_at: Timestamp,
    /// Redis counted it (its connect script, or a resync, succeeded): its user's `online` has
    /// been announced, so a resync that restores it does not announce it again.
    pub(super) confirmed: bool,
}

impl Mirrored {
    /// What the mirror keeps of `e` (not yet confirmed).
    pub(super) fn new(e: &SocketEntry) -> Self {
        Mirrored {
            user_id: e.user_id.as_str().into(),
            user_name: (e.user_name != e.user_id).then(|| e.user_name.as_str().into()),
            user_role: e.user_role,
            connected_at: e.connected_at,
            confirmed: false,
        }
    }

    pub(super) fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The socket's entry again: `socket_id` is its key in the mirror, `node` this node.
    pub(super) fn entry(&self, socket_id: &str, node: &str) -> SocketEntry {
        SocketEntry {
            user_id: self.user_id.to_string(),
            socket_id: socket_id.to_owned(),
            user_name: self
                .user_name
                .as_deref()
                .unwrap_or(&self.user_id)
                .to_owned(),
            user_role: self.user_role,
            connected_at: self.connected_at,
            node: node.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, role: Role) -> SocketEntry {
        SocketEntry {
            user_id: "u-1".into(),
            socket_id: "AAAAAAAAAAAAAAAA".into(),
            user_name: name.into(),
            user_role: role,
            connected_at: crate::domain::now(),
            node: "node-a".into(),
        }
    }

    #[test]
    fn the_mirror_gives_back_the_entry_it_was_made_from() {
        for e in [entry("u-1", Role::User), entry("Ada", Role::Admin)] {
            let m = Mirrored::new(&e);
            assert_eq!(m.user_id(), "u-1");
            assert!(!m.confirmed);
            assert_eq!(m.entry(&e.socket_id, &e.node), e);
        }
        // A name equal to the id is not kept twice.
        assert!(Mirrored::new(&entry("u-1", Role::User)).user_name.is_none());
    }
}
