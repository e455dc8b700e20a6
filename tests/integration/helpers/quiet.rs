//! Absence asserted without a fixed wait: [`no_more`] waits until the nodes have nothing left
//! that could emit (their delivery coalescers idle, however long the 1 s cooldown keeps a
//! flusher), then sends a witness through each node's fan-out to the socket's user room and
//! waits for it: a node's emissions to one room reach a socket in the order they were made,
//! so anything sent before the witness has arrived by then.

use std::time::Duration;

use switchboard::domain::ChatId;
use switchboard::ordering::Turn;
use switchboard::service::events::TypingEvent;

use super::{Sio, TestNode, WAIT, eventually};

/// How long the coalescers may take to go idle: well over one cooldown.
const SETTLE: Duration = Duration::from_secs(10);

/// Asserts that `sio` (a socket of `user`) has no `event` queued and none on its way from
/// `nodes`.
pub async fn no_more(sio: &Sio, user: &str, event: &str, nodes: &[&TestNode], what: &str) {
    for node in nodes {
        assert!(
            eventually(SETTLE, || async { node.state.delivery.is_idle() }).await,
            "{what}: node {} still flushing deliveries after {SETTLE:?}",
            node.port
        );
    }
    let chat = ChatId::from_trusted("witness".to_owned());
    for (i, node) in nodes.iter().enumerate() {
        let witness = TypingEvent {
            chat_id: &chat,
            user_id: &format!("witness-{i}"),
            user_name: "witness",
            is_typing: true,
        };
        node.state
            .emitter()
            .emit(
                vec![format!("user:{user}")],
                Vec::new(),
                &witness,
                Turn::unordered(),
            )
            .await;
    }
    let mut seen = 0;
    while seen < nodes.len() {
        let typing = sio
            .try_event("user:typing", WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: a witness did not arrive within {WAIT:?}"));
        if typing["chatId"] == "witness" {
            seen += 1;
        }
    }
    assert!(
        sio.drain(event).is_empty(),
        "{what}: an unexpected '{event}' arrived"
    );
}
