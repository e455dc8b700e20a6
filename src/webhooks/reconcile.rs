//! `message.created` derived from what was saved: a node that died between saving a message and
//! emitting it never published it, so the sender node reads the chats changed since its last
//! pass and queues each message saved in that window. A message's `webhook-id` is its own id
//! (`msg_{id}`): one the emitting node queued already stays one delivery.
//!
//! Each pass covers the messages saved between the previous pass's end and [`SETTLE`] ago
//! (the emitting node queues its own within that time); a node that takes the lease over
//! starts [`FIRST_LOOK_BACK`] back, covering the dead sender's last passes.

use std::sync::Arc;
use std::time::Duration;

use super::message_created;
use super::outbox::Outbox;
use super::writer::retry;
use super::{Endpoint, Lease, deliveries, next_pos};
use crate::domain::{ChatQuery, HistoryPage, Timestamp};
use crate::store::Store;

/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(2);
/// How long a message is left to its own node before a pass looks at it.
const SETTLE: Duration = Duration::from_secs(3);
/// Where a new sender's first pass starts.
const FIRST_LOOK_BACK: Duration = Duration::from_secs(600);
/// The most chats one pass reads (a busier window is finished by the next passes).
const CHATS_PER_PASS: usize = 1000;
/// The most messages of one chat a pass reads.
const MESSAGES_PER_CHAT: usize = 200;
/// How long acknowledged deliveries are kept (a message re-derived within it is not sent
/// again), and how often they are pruned.
const KEEP_DELIVERED: Duration = Duration::from_secs(3600);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub async fn run(
    store: Arc<dyn Store>,
    outbox: Arc<dyn Outbox>,
    endpoints: Vec<Endpoint>,
    lease: Arc<Lease>,
    reminder: Option<Duration>,
) {
    let mut from: Option<Timestamp> = None;
    let mut pruned = std::time::Instant::now();
    loop {
        tokio::time::sleep(EVERY).await;
        if !lease.is_held() {
            from = None;
            continue;
        }
        let now = crate::domain::now();
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = std::time::Instant::now();
            let before = now.timestamp_millis() - KEEP_DELIVERED.as_millis() as i64;
            if let Err(e) = outbox.prune(before).await {
                tracing::warn!(error = %e, "could not prune delivered webhooks");
            }
        }
        let to = now - chrono::Duration::from_std(SETTLE).unwrap_or_default();
        let start =
            from.unwrap_or(now - chrono::Duration::from_std(FIRST_LOOK_BACK).unwrap_or_default());
        match pass(&*store, &*outbox, &endpoints, reminder, start, to).await {
            Ok(()) => from = Some(to),
            Err(e) => tracing::warn!(error = %e, "webhook reconcile pass failed; it is repeated"),
        }
    }
}

/// Queues every message saved in `[start, to)`.
async fn pass(
    store: &dyn Store,
    outbox: &dyn Outbox,
    endpoints: &[Endpoint],
    reminder: Option<Duration>,
    start: Timestamp,
    to: Timestamp,
) -> Result<(), String> {
    let mut after = None;
    let mut seen = 0;
    'chats: while seen < CHATS_PER_PASS {
        let page = store
            .list_chats(&ChatQuery {
                participant: None,
                status: None,
                limit: 100,
                after: after.clone(),
                ascending: false,
                reader: String::new(),
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(crate::domain::ChatCursor {
            updated_at: last.chat.updated_at,
            id: last.chat.id.clone(),
        });
        for summary in &page {
            seen += 1;
            if summary.chat.updated_at < start {
                break 'chats;
            }
            let messages = store
                .messages(&summary.chat.id, HistoryPage::Latest, MESSAGES_PER_CHAT)
                .await
                .map_err(|e| e.to_string())?;
            // Oldest first, so the chat's order is the queue order.
            for m in messages.iter().rev() {
                if m.timestamp < start || m.timestamp >= to {
                    continue;
                }
                let event = message_created(m);
                let rows = deliveries(&event, endpoints, next_pos());
                retry("queue a reconciled message", || outbox.enqueue(&rows)).await;
                if let (Some(after), Some((chat, side))) = (reminder, &event.unread) {
                    let due = m.timestamp.timestamp_millis() + after.as_millis() as i64;
                    retry("plan a chat.unread look", || {
                        outbox.watch_unread(chat, side.as_str(), due)
                    })
                    .await;
                }
            }
        }
        if page.len() < 100 {
            break;
        }
    }
    Ok(())
}
