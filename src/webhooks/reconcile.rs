//! `message.created` derived from what was saved: a node that died between saving a message and
//! emitting it never published it, so the sender node reads the chats changed since its last
//! pass and queues each message saved in that window. A message's `webhook-id` is its own id
//! (`msg_{id}`): one the emitting node queued already stays one delivery.
//!
//! Each pass covers the messages saved between the previous pass's end (less [`SETTLE`] again,
//! for a save that took long) and [`SETTLE`] ago (the emitting node queues its own within that
//! time); a node that takes the lease over starts [`FIRST_LOOK_BACK`] back, covering the dead
//! sender's last passes. A re-derived message is queued at its own place in its chat
//! ([`super::message_pos`]: where its node would have queued it), and each pass's end is told
//! to the senders (`reconciled`): a sender holds a message whose predecessor it has not seen
//! until a pass has looked past it, so a message queued late never follows a later one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::message_created;
use super::outbox::Outbox;
use super::writer::retry;
use super::{Endpoint, Lease, deliveries};
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

/// What a reconcile pass reads and writes.
pub struct Reconciler {
    pub store: Arc<dyn Store>,
    pub outbox: Arc<dyn Outbox>,
    pub endpoints: Vec<Endpoint>,
    pub lease: Arc<Lease>,
    pub reminder: Option<Duration>,
    /// Where the last pass ended (ms since the epoch; 0: no pass yet on this sender).
    pub reconciled: Arc<AtomicI64>,
    /// Wakes the senders after a pass (a held message may go now).
    pub wake: Arc<Notify>,
}

pub async fn run(r: Reconciler) {
    let mut from: Option<Timestamp> = None;
    let mut pruned = std::time::Instant::now();
    let settle = chrono::Duration::from_std(SETTLE).unwrap_or_default();
    loop {
        tokio::time::sleep(EVERY).await;
        if !r.lease.is_held() {
            from = None;
            r.reconciled.store(0, Ordering::Release);
            continue;
        }
        let now = crate::domain::now();
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = std::time::Instant::now();
            let before = now.timestamp_millis() - KEEP_DELIVERED.as_millis() as i64;
            if let Err(e) = r.outbox.prune(before).await {
                tracing::warn!(error = %e, "could not prune delivered webhooks");
            }
        }
        let to = now - settle;
        let start = from.map_or(
            now - chrono::Duration::from_std(FIRST_LOOK_BACK).unwrap_or_default(),
            |f| f - settle,
        );
        match pass(&r, start, to).await {
            Ok(()) => {
                from = Some(to);
                r.reconciled.store(to.timestamp_millis(), Ordering::Release);
                r.wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "webhook reconcile pass failed; it is repeated"),
        }
    }
}

/// Queues every message saved in `[start, to)`.
async fn pass(r: &Reconciler, start: Timestamp, to: Timestamp) -> Result<(), String> {
    let (store, outbox) = (&*r.store, &*r.outbox);
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
            let window: Vec<_> = messages
                .iter()
                .filter(|m| m.timestamp >= start && m.timestamp < to)
                .collect();
            // One outbox write per chat; each row at its message's own place.
            let rows: Vec<_> = window
                .iter()
                .flat_map(|m| deliveries(&message_created(m), &r.endpoints, super::message_pos(m)))
                .collect();
            if !rows.is_empty() {
                retry("queue reconciled messages", || outbox.enqueue(&rows)).await;
            }
            for m in window {
                let event = message_created(m);
                if let (Some(after), Some((chat, side))) = (r.reminder, &event.unread) {
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
