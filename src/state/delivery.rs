//! The per-node delivery coalescer: delivery triggers noted per (chat, recipient side), keeping
//! only the highest `seq`, and flushed as one store write a few milliseconds later, then at
//! most once per cooldown while triggers keep coming and a recipient is connected (`service/delivery.rs` flushes;
//! `docs/delivery.md`).
//!
//! Noting a trigger is one short mutex section and a map lookup: the first trigger of a quiet
//! (chat, side) allocates the entry (and the caller starts its flusher), later ones only
//! compare `seq`s. The entry stays while its flusher runs, so triggers in the cooldown join the
//! next window instead of starting a flusher of their own.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{Chat, ChatId, MessageId, Side, Timestamp};
use crate::webhooks::Pledged;

/// The newest message a trigger delivered, and to whom.
#[derive(Debug, Clone)]
pub struct Mark {
    pub seq: u64,
    pub message_id: MessageId,
    /// The recipient who got it (`deliveredTo`).
    pub to: String,
    pub at: Timestamp,
}

/// What a trigger knows about its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Delivered for certain (`chat:sync`, history, a replay, a client's confirmation): the
    /// flush writes the mark.
    Certain,
    /// Emitted live: delivered if a recipient socket is connected, which the flush checks.
    Live,
    /// Written already (the save moved the mark: a recipient socket was on this node): the
    /// flush only announces it.
    Stored,
}

/// What one window of a (chat, side) has to flush.
#[derive(Debug, Default)]
pub struct Pending {
    /// Known deliveries: `chat:sync`, history, a client's confirmation.
    pub certain: Option<Mark>,
    /// Live emissions: delivered if a recipient socket was connected, which the flush checks
    /// once for the whole window.
    pub live: Option<Mark>,
    /// Deliveries their save already wrote; they need only their `message:delivered`.
    pub stored: Option<Mark>,
    /// The `message.delivered` pledged ahead of the `stored` mark's save
    /// (`webhooks/pledges.rs`): fulfilled by its announcement, or forgotten.
    pub stored_pledge: Option<Pledged>,
    /// The pledges of stored marks a higher one superseded: never announced, forgotten.
    pub superseded: Vec<Pledged>,
    /// The chat's participants, for the rooms of `message:delivered` and the live check.
    pub participants: Vec<String>,
    /// The chat's staff participants ([`Chat::staff_participants`]): the staff recipients of a
    /// live check, or every staff member when empty.
    pub staff: Vec<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.certain.is_none()
            && self.live.is_none()
            && self.stored.is_none()
            && self.superseded.is_empty()
    }
}

/// Triggers waiting for their flush, per (chat, recipient side).
#[derive(Default)]
pub struct DeliveryTracker {
    pending: Mutex<HashMap<(ChatId, Side), Pending>>,
}

fn keep_max(slot: &mut Option<Mark>, mark: Mark) {
    if slot.as_ref().is_none_or(|m| m.seq < mark.seq) {
        *slot = Some(mark);
    }
}

impl DeliveryTracker {
    /// No trigger waits and no flusher runs: whatever a flush was to emit has been emitted.
    pub fn is_idle(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Notes a trigger (`pledged`: a stored mark's pledged webhook); `true` when no flusher
    /// runs for this (chat, side), so the caller starts one.
    pub fn note(
        &self,
        chat: &Chat,
        side: Side,
        mark: Mark,
        trigger: Trigger,
        pledged: Option<Pledged>,
    ) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let key = (chat.id.clone(), side);
        let first = !pending.contains_key(&key);
        let entry = pending.entry(key).or_default();
        if entry.participants != chat.participants {
            entry.participants = chat.participants.clone();
        }
        if !entry
            .staff
            .iter()
            .map(String::as_str)
            .eq(chat.staff_participants())
        {
            entry.staff = chat.staff_participants().map(str::to_owned).collect();
        }
        if trigger == Trigger::Stored {
            let higher = entry.stored.as_ref().is_none_or(|m| m.seq < mark.seq);
            let superseded = if higher {
                std::mem::replace(&mut entry.stored_pledge, pledged)
            } else {
                pledged
            };
            entry.superseded.extend(superseded);
        } else {
            entry.superseded.extend(pledged);
        }
        keep_max(
            match trigger {
                Trigger::Certain => &mut entry.certain,
                Trigger::Live => &mut entry.live,
                Trigger::Stored => &mut entry.stored,
            },
            mark,
        );
        first
    }

    /// Takes the window's marks for its flush; the entry stays (the flusher runs on), so the
    /// triggers of the cooldown gather in it. `None` if nothing was noted since the last take.
    pub fn take(&self, chat: &ChatId, side: Side) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.get_mut(&(chat.clone(), side))?;
        if entry.is_empty() {
            return None;
        }
        Some(Pending {
            certain: entry.certain.take(),
            live: entry.live.take(),
            stored: entry.stored.take(),
            stored_pledge: entry.stored_pledge.take(),
            superseded: std::mem::take(&mut entry.superseded),
            participants: entry.participants.clone(),
            staff: entry.staff.clone(),
        })
    }

    /// Ends the flusher of (chat, side) if nothing was noted since its last take (`true`: the
    /// entry is gone, the next trigger starts a new flusher); `false`: another window is due.
    pub fn finish_if_idle(&self, chat: &ChatId, side: Side) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let key = (chat.clone(), side);
        match pending.get(&key) {
            Some(entry) if !entry.is_empty() => false,
            _ => {
                pending.remove(&key);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::test_chat as chat;

    fn mark(seq: u64) -> Mark {
        Mark {
            seq,
            message_id: MessageId::from_trusted(format!("m{seq}")),
            to: String::new(),
            at: crate::domain::now(),
        }
    }

    #[test]
    fn triggers_in_a_cooldown_join_the_next_window_without_a_second_flusher() {
        let t = DeliveryTracker::default();
        let c = chat();
        let chat = c.id.clone();
        assert!(t.note(&c, Side::Staff, mark(1), Trigger::Live, None));
        assert_eq!(
            t.take(&chat, Side::Staff)
                .and_then(|p| p.live)
                .map(|m| m.seq),
            Some(1)
        );
        // The flusher cools down: new triggers gather, none starts a flusher.
        assert!(!t.note(&c, Side::Staff, mark(3), Trigger::Live, None));
        assert!(!t.note(&c, Side::Staff, mark(2), Trigger::Live, None));
        assert!(!t.finish_if_idle(&chat, Side::Staff));
        assert_eq!(
            t.take(&chat, Side::Staff)
                .and_then(|p| p.live)
                .map(|m| m.seq),
            Some(3)
        );
        assert!(t.take(&chat, Side::Staff).is_none());
        assert!(t.finish_if_idle(&chat, Side::Staff));
        // Quiet again: the next trigger starts a flusher.
        assert!(t.note(&c, Side::Staff, mark(4), Trigger::Certain, None));
    }
}
