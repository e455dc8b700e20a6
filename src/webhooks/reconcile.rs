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
//!
//! A window is walked in full: chats in the order of their last change, oldest first, from a
//! cursor, at most [`CHATS_PER_PASS`] a pass, every message of each chat saved in the window
//! (page by page). A pass stopped by its bound leaves the cursor for the next, which goes on
//! at once; the window ends (and `reconciled` moves) only when the walk reaches the newest
//! chat. Each pass also settles the written-ahead events of nodes that died (`pledges.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::message_created;
use super::outbox::Outbox;
use super::writer::retry;
use super::{Endpoint, Lease, deliveries};
use crate::domain::{ChatCursor, ChatId, ChatQuery, HistoryPage, Message, Timestamp};
use crate::store::Store;

/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(2);
/// How long a message is left to its own node before a pass looks at it.
const SETTLE: Duration = Duration::from_secs(3);
/// Where a new sender's first pass starts.
const FIRST_LOOK_BACK: Duration = Duration::from_secs(600);
/// The most chats one pass reads: a busier window is finished by the next passes, which resume
/// where this one stopped.
const CHATS_PER_PASS: usize = 1000;
/// Chats read at a time.
const PAGE: usize = 100;
/// Messages of one chat read at a time (all of a chat's window is read, page by page).
const MESSAGES_PER_PAGE: usize = 200;
/// How long acknowledged deliveries are kept (a message re-derived within it is not sent
/// again), and how often they are pruned.
const KEEP_DELIVERED: Duration = Duration::from_secs(3600);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What a reconcile pass reads and writes.
pub struct Reconciler {
    pub store: Arc<dyn Store>,
    /// Settles the `user.*` pledges (`pledges.rs`).
    pub presence: Arc<dyn crate::presence::Presence>,
    pub outbox: Arc<dyn Outbox>,
    pub endpoints: Vec<Endpoint>,
    pub lease: Arc<Lease>,
    pub reminder: Option<Duration>,
    /// Where the last pass ended (ms since the epoch; 0: no pass yet on this sender).
    pub reconciled: Arc<AtomicI64>,
    /// Wakes the senders after a pass (a held message may go now).
    pub wake: Arc<Notify>,
}

/// A window being walked: the messages saved in `[start, to)`, read chat by chat in the order
/// of their last change (oldest first), from `cursor` on. A chat changed while the walk goes
/// on moves behind the cursor's far side, so the walk still reaches it.
struct Walk {
    start: Timestamp,
    to: Timestamp,
    cursor: ChatCursor,
}

impl Walk {
    fn new(start: Timestamp, to: Timestamp) -> Self {
        // Every chat changed at `start` or later (a cursor just before it: ids sort below the
        // greatest one).
        let cursor = ChatCursor {
            updated_at: start - chrono::Duration::milliseconds(1),
            id: ChatId::from_trusted("f".repeat(24)),
        };
        Self { start, to, cursor }
    }
}

pub async fn run(r: Reconciler) {
    let mut from: Option<Timestamp> = None;
    let mut walk: Option<Walk> = None;
    let mut pruned = std::time::Instant::now();
    let settle = chrono::Duration::from_std(SETTLE).unwrap_or_default();
    loop {
        if walk.is_none() {
            tokio::time::sleep(EVERY).await;
        } else {
            // A window left unfinished by the last pass's bound: on with it, after others ran.
            tokio::task::yield_now().await;
        }
        if !r.lease.is_held() {
            from = None;
            walk = None;
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
        let mut current = walk.take().unwrap_or_else(|| {
            let start = from.map_or(
                now - chrono::Duration::from_std(FIRST_LOOK_BACK).unwrap_or_default(),
                |f| f - settle,
            );
            Walk::new(start, now - settle)
        });
        let settled = super::pledges::settle(&*r.store, &*r.presence, &*r.outbox, &r.endpoints);
        if let Err(e) = settled.await {
            tracing::warn!(error = %e, "written-ahead webhooks not settled; next pass");
        }
        match pass(&r, &mut current, chats_per_pass()).await {
            Ok(true) => {
                from = Some(current.to);
                r.reconciled
                    .store(current.to.timestamp_millis(), Ordering::Release);
                r.wake.notify_waiters();
            }
            // Bounded: the next pass resumes at the cursor.
            Ok(false) => walk = Some(current),
            Err(e) => {
                tracing::warn!(error = %e, "webhook reconcile pass failed; it is repeated");
                walk = Some(current);
                tokio::time::sleep(EVERY).await;
            }
        }
    }
}

/// The most chats one pass reads: [`CHATS_PER_PASS`], lowered by a test to make a burst span
/// several passes.
fn chats_per_pass() -> usize {
    #[cfg(any(test, feature = "test-support"))]
    {
        let n = TEST_CHATS_PER_PASS.load(Ordering::Relaxed);
        if n > 0 {
            return n;
        }
    }
    CHATS_PER_PASS
}

/// Test-only: the bound of one pass (0: [`CHATS_PER_PASS`]).
#[cfg(any(test, feature = "test-support"))]
pub static TEST_CHATS_PER_PASS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Walks on through `walk`'s window, at most `bound` chats: queues every message saved in it.
/// `true` once the window is done; `false` when the bound stopped it (the cursor says where).
async fn pass(r: &Reconciler, walk: &mut Walk, bound: usize) -> Result<bool, String> {
    let (store, outbox) = (&*r.store, &*r.outbox);
    let mut seen = 0;
    while seen < bound {
        let want = PAGE.min(bound - seen);
        let page = store
            .list_chats(&ChatQuery {
                participant: None,
                status: None,
                limit: want,
                after: Some(walk.cursor.clone()),
                ascending: true,
                reader: String::new(),
            })
            .await
            .map_err(|e| e.to_string())?;
        for summary in &page {
            seen += 1;
            let window = saved_in(store, &summary.chat.id, walk.start, walk.to).await?;
            // One outbox write per chat; each row at its message's own place.
            let rows: Vec<_> = window
                .iter()
                .flat_map(|m| deliveries(&message_created(m), &r.endpoints, super::message_pos(m)))
                .collect();
            if !rows.is_empty() {
                retry("queue reconciled messages", || outbox.enqueue(&rows)).await;
            }
            for m in &window {
                let event = message_created(m);
                if let (Some(after), Some((chat, side))) = (r.reminder, &event.unread) {
                    let due = m.timestamp.timestamp_millis() + after.as_millis() as i64;
                    retry("plan a chat.unread look", || {
                        outbox.watch_unread(chat, side.as_str(), due)
                    })
                    .await;
                }
            }
            walk.cursor = ChatCursor {
                updated_at: summary.chat.updated_at,
                id: summary.chat.id.clone(),
            };
        }
        if page.len() < want {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The messages of `chat` saved in `[start, to)`, all of them, a page at a time from the newest.
async fn saved_in(
    store: &dyn Store,
    chat: &ChatId,
    start: Timestamp,
    to: Timestamp,
) -> Result<Vec<Message>, String> {
    let mut found = Vec::new();
    let mut page = HistoryPage::Latest;
    loop {
        let messages = store
            .messages(chat, page, MESSAGES_PER_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let done = messages.len() < MESSAGES_PER_PAGE
            || messages.last().is_none_or(|m| m.timestamp < start);
        if let Some(oldest) = messages.last() {
            page = HistoryPage::Before(oldest.seq);
        }
        found.extend(
            messages
                .into_iter()
                .filter(|m| m.timestamp >= start && m.timestamp < to),
        );
        if done {
            found.reverse();
            return Ok(found);
        }
    }
}
