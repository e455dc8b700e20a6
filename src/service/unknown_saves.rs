//! Saves whose outcome is unknown. A save that fails as `Unavailable` may be a timeout: the
//! node stopped waiting, but MongoDB may still write the message. Its sender was told nothing
//! was saved, and a `clientMessageId` retry that finds the message returns it and emits nothing
//! (PROTOCOL.md), so without this the message would be stored and never delivered live: found by
//! the chaos soak (`tests/chaos/`, a store stall; docs/security.md).
//!
//! The node that made the attempt knows the id it gave the message ([`NewMessage::id`]), so it
//! looks for that id a few times, backing off, and if the message was saved after all, emits
//! its `message:new` then. Found by its own id, the message is this attempt's save, never a
//! retry's (a retry that saved its own has emitted it), so it goes out once.
//!
//! [`NewMessage::id`]: crate::domain::NewMessage

use std::time::Duration;

use crate::cluster::rooms;
use crate::domain::{Chat, MessageId};
use crate::ordering::Turn;
use crate::service::delivery::Deliveries;
use crate::service::emit::Emitter;
use crate::service::events::MessageNew;
use crate::state::AppState;

/// The waits between looks: about 30 s in all, longer than any store timeout (a write the
/// server still holds lands within that, or the server lost it).
const LOOKS: [Duration; 6] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// After a save of message `id` in `chat` failed as `Unavailable`: emits its `message:new` if
/// it turns out to be saved (`here`: the recipient on this node the save was told of, as for a
/// save that answered). In the background; the caller has answered already.
pub fn settle_unknown_save(node: AppState, chat: Chat, id: MessageId, here: Option<String>) {
    tokio::spawn(async move {
        for wait in LOOKS {
            tokio::time::sleep(wait).await;
            let Ok(Some(message)) = node.store.message(&chat.id, &id).await else {
                continue;
            };
            tracing::info!(chat_id = %chat.id, seq = message.seq, "a save that timed out landed: emitting it now");
            node.metrics.messages_saved.inc();
            // As `Chats::send_message` announces a save that answered.
            let payload = MessageNew {
                chat_id: &message.chat_id,
                message: &message,
            };
            if Emitter::of(&node)
                .emit(
                    rooms::chat(&chat.participants),
                    Vec::new(),
                    &payload,
                    Turn::unordered(),
                )
                .await
            {
                node.metrics.messages_emitted.inc();
                Deliveries::of(&node).note_live_delivery(&chat, &message, here);
            }
            return;
        }
    });
}
