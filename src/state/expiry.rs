//! When each live socket's token runs out: a socket's transport is closed once its token's
//! `exp` plus the leeway has passed (PROTOCOL.md, Identity), so its client reconnects by itself
//! and its next handshake checks a token like any other.
//!
//! One ordered index per node, not a timer per socket: the handshake adds `(deadline, socket)`,
//! the disconnect removes it, and one sweeper (`realtime::handshake::close_expired`, every
//! second) takes what has come due. An idle socket pays for one 20-byte index entry (34 heap
//! bytes with the B-tree's slack, counted over 100,000 sockets), where a sleeping task would
//! cost it a task of its own; the entry's key is kept by the socket's disconnect handler, whose
//! allocation had room for it, so no per-socket struct grew.

use std::collections::BTreeSet;
use std::sync::Mutex;

use socketioxide::socket::Sid;

/// The live sockets whose tokens expire, ordered by deadline.
#[derive(Default)]
pub struct TokenExpiries {
    /// `(deadline, socket)`: the deadline in Unix seconds, `u32` so an entry is 20 bytes
    /// (Unix seconds fit it until 2106). A std lock, held for an insert, a removal or a split.
    due: Mutex<BTreeSet<(u32, Sid)>>,
}

impl TokenExpiries {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u32, Sid)>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches `sid` until `deadline` (Unix seconds); returns the key to [`forget`] it by.
    /// A deadline past what the index holds (after 2106) is as good as none: not watched.
    ///
    /// [`forget`]: TokenExpiries::forget
    pub fn watch(&self, sid: Sid, deadline: u64) -> Option<u32> {
        let deadline = u32::try_from(deadline).ok()?;
        self.lock().insert((deadline, sid));
        Some(deadline)
    }

    /// Stops watching a socket (it disconnected); nothing if it was already taken.
    pub fn forget(&self, sid: Sid, deadline: u32) {
        self.lock().remove(&(deadline, sid));
    }

    /// Removes and returns the sockets whose deadline is `now` (Unix seconds) or earlier.
    pub fn take_due(&self, now: u64) -> Vec<Sid> {
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let mut due = self.lock();
        // What comes after `now` stays: one split, not a removal per entry.
        let later = due.split_off(&(now.saturating_add(1), Sid::ZERO));
        std::mem::replace(&mut *due, later)
            .into_iter()
            .map(|(_, sid)| sid)
            .collect()
    }

    /// Sockets watched now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_has_come_due_is_taken_and_a_forgotten_socket_never_is() {
        let t = TokenExpiries::default();
        let (a, b, c) = (Sid::new(), Sid::new(), Sid::new());
        t.watch(a, 100);
        let kb = t.watch(b, 100).unwrap();
        t.watch(c, 101);
        t.forget(b, kb);

        assert!(t.take_due(99).is_empty());
        assert_eq!(t.take_due(100), vec![a]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.take_due(200), vec![c]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_deadline_beyond_the_index_is_not_watched() {
        let t = TokenExpiries::default();
        assert_eq!(t.watch(Sid::new(), u64::from(u32::MAX) + 1), None);
        assert!(t.is_empty());
    }
}
