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
//!
//! What this node's writer queued is not read again ([`Marks`], `queued.rs`): per chat the
//! sender keeps the `seq` up to which every message is queued; a later look reads the chat's
//! newest message, and the messages after the mark only from the end of the run its writer
//! queued. A chat's first look (and every look after the lease moves) reads its whole window.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::message_created;
use super::outbox::{Batch, Outbox};
use super::queued::QueuedMessages;
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
    /// The messages this node's writer queued: not read again (`queued.rs`).
    pub queued: Arc<QueuedMessages>,
    pub metrics: crate::metrics::WebhookMetrics,
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
    let mut marks = Marks::default();
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
            marks.clear();
            r.queued.clear();
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
        match pass(&r, &mut current, &mut marks, chats_per_pass()).await {
            Ok(true) => {
                r.metrics.reconcile_passes.inc();
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
async fn pass(
    r: &Reconciler,
    walk: &mut Walk,
    marks: &mut Marks,
    bound: usize,
) -> Result<bool, String> {
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
            let chat = &summary.chat.id;
            let (window, mark) = match marks.get(chat.as_str()) {
                Some(&mark) => after_mark(r, chat, mark, walk).await?,
                None => first_look(r, chat, walk).await?,
            };
            // One outbox write per chat: each row at its message's own place, and its look.
            let rows: Vec<_> = window
                .iter()
                .flat_map(|m| deliveries(&message_created(m), &r.endpoints, super::message_pos(m)))
                .collect();
            let watches: Vec<_> = match r.reminder {
                Some(after) => window
                    .iter()
                    .filter_map(|m| {
                        let (chat, side) = message_created(m).unread?;
                        let due = m.timestamp.timestamp_millis() + after.as_millis() as i64;
                        Some((chat, side.as_str().to_owned(), due))
                    })
                    .collect(),
                None => Vec::new(),
            };
            if !rows.is_empty() || !watches.is_empty() {
                let write = Batch {
                    deliveries: rows,
                    fulfilled: Vec::new(),
                    watches,
                };
                retry("queue reconciled messages", || outbox.write_batch(&write)).await;
            }
            marks.set(chat.as_str(), mark);
            r.queued.forget_upto(chat.as_str(), mark);
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

/// Per chat, the `seq` up to which every message is in the outbox (or was saved before any
/// window this sender walked): a chat's next look reads only what follows it, and nothing when
/// this node's writer queued all of that (`queued.rs`). Bounded like [`QueuedMessages`].
#[derive(Default)]
pub(super) struct Marks(HashMap<String, u64>);

/// The most chats [`Marks`] remembers (past it, the chats are looked at afresh).
const MARKS_AT_MOST: usize = 200_000;

impl Marks {
    fn get(&self, chat: &str) -> Option<&u64> {
        self.0.get(chat)
    }

    fn set(&mut self, chat: &str, mark: u64) {
        if self.0.len() >= MARKS_AT_MOST && !self.0.contains_key(chat) {
            self.0.clear();
        }
        self.0.insert(chat.to_owned(), mark);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A chat this sender has no mark of: every message saved in the window (not queued by this
/// node's writer), and the chat's mark: the last `seq` of the unbroken run of its messages
/// saved before the window's end (those older than its start are taken as covered, as by
/// every pass).
async fn first_look(
    r: &Reconciler,
    chat: &ChatId,
    walk: &Walk,
) -> Result<(Vec<Message>, u64), String> {
    let (recent, newest) = saved_since(r, chat, walk.start).await?;
    let mut mark = match recent.first() {
        Some(first) => first.seq.saturating_sub(1),
        None => newest.unwrap_or(0),
    };
    let mut unbroken = true;
    let mut window = Vec::new();
    for m in recent.into_iter().filter(|m| m.timestamp < walk.to) {
        if unbroken && m.seq == mark + 1 {
            mark = m.seq;
        } else {
            unbroken = false;
        }
        if !r.queued.has(chat.as_str(), m.seq) {
            window.push(m);
        }
    }
    Ok((window, mark))
}

/// A chat marked at `mark`: its messages after the mark, read from the end of the run of them
/// this node's writer queued (`queued.rs`; nothing is read when that run reaches its newest
/// message), saved before the window's end and not queued here; and the new mark (a gap in
/// `seq` stops it unless older than the window's start).
async fn after_mark(
    r: &Reconciler,
    chat: &ChatId,
    mark: u64,
    walk: &Walk,
) -> Result<(Vec<Message>, u64), String> {
    let store = &*r.store;
    let newest = store
        .messages(chat, HistoryPage::Latest, 1)
        .await
        .map_err(|e| e.to_string())?;
    r.metrics.reconcile_reads.inc_by(newest.len() as u64);
    let Some(newest) = newest.first().map(|m| m.seq) else {
        return Ok((Vec::new(), mark));
    };
    let queued = r.queued.run_from(chat.as_str(), mark);
    if newest <= queued {
        return Ok((Vec::new(), newest.max(queued)));
    }
    let (mut window, mut next_mark, mut unbroken, mut after) = (Vec::new(), queued, true, queued);
    loop {
        let page = store
            .messages(chat, HistoryPage::After(after), MESSAGES_PER_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        r.metrics.reconcile_reads.inc_by(page.len() as u64);
        let full = page.len() == MESSAGES_PER_PAGE;
        for m in page {
            // Saved since the window's end: left to the next pass.
            if m.timestamp >= walk.to {
                return Ok((window, next_mark));
            }
            after = m.seq;
            if unbroken && (m.seq == next_mark + 1 || m.timestamp < walk.start) {
                next_mark = m.seq;
            } else {
                unbroken = false;
            }
            if !r.queued.has(chat.as_str(), m.seq) {
                window.push(m);
            }
        }
        if !full {
            return Ok((window, next_mark));
        }
    }
}

/// The messages of `chat` saved at `start` or later, oldest first, read a page at a time from
/// the newest, and the chat's newest `seq` (`None`: no message).
async fn saved_since(
    r: &Reconciler,
    chat: &ChatId,
    start: Timestamp,
) -> Result<(Vec<Message>, Option<u64>), String> {
    let mut found = Vec::new();
    let mut newest = None;
    let mut page = HistoryPage::Latest;
    loop {
        let messages = r
            .store
            .messages(chat, page, MESSAGES_PER_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        r.metrics.reconcile_reads.inc_by(messages.len() as u64);
        newest = newest.or(messages.first().map(|m| m.seq));
        let done = messages.len() < MESSAGES_PER_PAGE
            || messages.last().is_none_or(|m| m.timestamp < start);
        if let Some(oldest) = messages.last() {
            page = HistoryPage::Before(oldest.seq);
        }
        found.extend(messages.into_iter().filter(|m| m.timestamp >= start));
        if done {
            found.reverse();
            return Ok((found, newest));
        }
    }
}
