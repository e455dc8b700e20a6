//! Saves whose outcome is unknown. A save that fails as `Unavailable` may be a timeout: the
//! node stopped waiting, but MongoDB may still write the message. PROTOCOL.md: if saving fails
//! the ack says `UNAVAILABLE` and nobody receives the message; if it is saved, the sender's ack
//! says so and everyone gets it, in the sender's order. So the attempt settles its own outcome
//! before it answers, still in the sender's turn: it looks for the id it gave the message
//! ([`NewMessage::id`]) a few times over a few seconds, and a message found is this attempt's
//! save (never a retry's), answered and emitted as any save. One that lands later still is
//! stored and never emitted: clients see the gap in `seq` and catch up with `chat:sync`, and
//! the sender's `clientMessageId` retry gets it. Found by the chaos soak (`tests/chaos/`, a
//! store stall; docs/security.md).
//!
//! [`NewMessage::id`]: crate::domain::NewMessage

use std::time::Duration;

use crate::domain::{ChatId, Message, MessageId};
use crate::store::Store;

/// The waits between looks: 3.5 s in all, on top of the store timeout the save already waited.
const LOOKS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// After a save of message `id` in `chat` failed as `Unavailable`: the message, if it was saved
/// after all.
pub async fn landed(store: &dyn Store, chat: &ChatId, id: &MessageId) -> Option<Message> {
    for wait in LOOKS {
        tokio::time::sleep(wait).await;
        if let Ok(Some(message)) = store.message(chat, id).await {
            tracing::info!(chat_id = %chat, seq = message.seq, "a save that timed out landed");
            return Some(message);
        }
    }
    None
}
