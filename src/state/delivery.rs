//! The per-node delivery coalescer: delivery triggers noted per (chat, recipient side), keeping
//! only the highest `seq`, and flushed as one store write a few milliseconds later
//! (`service/delivery.rs` flushes; `docs/delivery.md`).
//!
//! Noting a trigger is one short mutex section and a map lookup: the first trigger of a window
//! allocates the entry (and the caller schedules its flush), later ones only compare `seq`s.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{ChatId, MessageId, Side, Timestamp};

/// The newest message a trigger delivered, and to whom.
#[derive(Debug, Clone)]
pub struct Mark {
    pub seq: u64,
    pub message_id: MessageId,
    /// The recipient who got it (`deliveredTo`).
    pub to: String,
    pub at: Timestamp,
}

/// What is waiting to be flushed for one (chat, side).
#[derive(Debug, Default)]
pub struct Pending {
    /// Known deliveries: `chat:sync`, history, a client's confirmation.
    pub certain: Option<Mark>,
    /// Live emissions: delivered if a recipient socket was connected, which the flush checks
    /// once for the whole window.
    pub live: Option<Mark>,
    /// The chat's participants, for the rooms of `message:delivered` and the live check.
    pub participants: Vec<String>,
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
    /// Notes a trigger; `true` when nothing was pending for this (chat, side), so the caller
    /// schedules the flush.
    pub fn note(
        &self,
        chat: &ChatId,
        side: Side,
        participants: &[String],
        mark: Mark,
        live: bool,
    ) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let key = (chat.clone(), side);
        let first = !pending.contains_key(&key);
        let entry = pending.entry(key).or_insert_with(|| Pending {
            participants: participants.to_vec(),
            ..Pending::default()
        });
        keep_max(
            if live {
                &mut entry.live
            } else {
                &mut entry.certain
            },
            mark,
        );
        first
    }

    /// Takes what is pending for (chat, side), for its flush.
    pub fn take(&self, chat: &ChatId, side: Side) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.remove(&(chat.clone(), side))
    }
}
