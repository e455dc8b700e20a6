//! The `message.created` events this node's writer has put in the outbox, by chat and `seq`:
//! the reconcile pass reads a chat's messages only when some of its newest ones are not here
//! (`reconcile.rs`). Before this, every pass re-read every changed chat's newest page (up to
//! 200 messages) and queued each message again: on the order of 10^5 message reads for the
//! chat bench's 18,000 saves (loadtest/journal/2026-12-08-webhook-cost.md).
//!
//! Only facts are noted (an event whose outbox write succeeded), so a message missing here is
//! only ever read again, never skipped. Bounded: past [`AT_MOST`] noted messages everything is
//! forgotten (the next passes read the chats, as without this).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// The most messages remembered at once.
const AT_MOST: usize = 200_000;

#[derive(Default)]
pub struct QueuedMessages {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_chat: HashMap<String, BTreeSet<u64>>,
    len: usize,
}

impl QueuedMessages {
    /// Message `seq` of `chat` is in the outbox (its deliveries and its `chat.unread` look).
    pub fn note(&self, chat: &str, seq: u64) {
        let mut inner = self.lock();
        if inner.len >= AT_MOST {
            *inner = Inner::default();
        }
        if inner
            .by_chat
            .entry(chat.to_owned())
            .or_default()
            .insert(seq)
        {
            inner.len += 1;
        }
    }

    /// The last `seq` of the unbroken run of `chat`'s noted messages that follows `after`
    /// (`after` itself when the next one is not noted).
    pub fn run_from(&self, chat: &str, after: u64) -> u64 {
        let inner = self.lock();
        let mut last = after;
        if let Some(seqs) = inner.by_chat.get(chat) {
            for &seq in seqs.range(after + 1..) {
                if seq != last + 1 {
                    break;
                }
                last = seq;
            }
        }
        last
    }

    /// Whether message `seq` of `chat` is noted.
    pub fn has(&self, chat: &str, seq: u64) -> bool {
        let inner = self.lock();
        inner.by_chat.get(chat).is_some_and(|s| s.contains(&seq))
    }

    /// Forgets `chat`'s messages up to `upto` (the reconcile pass's mark has passed them).
    pub fn forget_upto(&self, chat: &str, upto: u64) {
        let mut inner = self.lock();
        let Some(seqs) = inner.by_chat.get_mut(chat) else {
            return;
        };
        let kept = seqs.split_off(&(upto + 1));
        let forgotten = seqs.len();
        if kept.is_empty() {
            inner.by_chat.remove(chat);
        } else {
            *seqs = kept;
        }
        inner.len -= forgotten;
    }

    /// Forgets everything (this node no longer reconciles).
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_at_a_missing_message_and_is_forgotten_up_to_a_mark() {
        let q = QueuedMessages::default();
        for seq in [3, 4, 6] {
            q.note("c", seq);
        }
        assert_eq!(q.run_from("c", 2), 4, "5 is missing");
        assert_eq!(q.run_from("c", 5), 6);
        assert_eq!(q.run_from("c", 0), 0, "1 is missing");
        assert_eq!(q.run_from("other", 2), 2);
        q.forget_upto("c", 4);
        assert!(!q.has("c", 4));
        assert!(q.has("c", 6));
        q.forget_upto("c", 6);
        assert_eq!(q.lock().len, 0);
        assert!(q.lock().by_chat.is_empty());
    }
}
