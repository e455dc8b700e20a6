//! The outage queue: events kept while Redis is unreachable, and their replay to the other
//! nodes once it is back.
//!
//! When a publish fails, or while Redis is known to be down, [`Ledger::keep`] marks the outage
//! and keeps the event (if its emission asks for replay) in a bounded queue, in its original
//! place among this node's emissions. Once Redis answers again and every peer is subscribed
//! again (or a presence TTL has passed), the supervisor ([`super::supervisor`]) re-subscribes,
//! then the fan-out's replay (`RedisFanout::replay`, `fanout.rs`) publishes the kept events in their original order to the other
//! nodes only (this node's sockets, which already had them, are excluded through a per-node
//! room). New emissions queue behind them until the queue is empty, so a sender's messages keep
//! their order. A reconnect of the pub/sub connection also enters this state, since peers may
//! not hear anything until they re-subscribe, and keeps for replay the emissions of the 2 s
//! before it ([`Ledger::reconnected`]): fred re-sends those on the new connection as soon as
//! it is up, where they succeed and reach nobody yet.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, OnceLock};

use prometheus::IntCounter;

use crate::cluster::FanoutError;

/// Events kept for replay during an outage; beyond it the oldest go (clients catch up by
/// `chat:sync`).
const MAX_KEPT: usize = 10_000;

/// How long an emission stays in the recent list: longer than any publish can wait in fred's
/// queue (its timeout) and be retried on a new connection after a reconnect.
const RECENT: std::time::Duration = std::time::Duration::from_secs(2);

/// An event whose publish failed, kept for replay (or, in the recent list, one that might
/// have to be).
#[derive(Clone)]
pub(super) struct Kept {
    /// Its place among this node's emissions: kept events are replayed in this order.
    pub(super) order: u64,
    /// The emission's rooms, as it was first sent.
    pub(super) rooms: Vec<String>,
    /// The emission's excluded rooms; a replay adds this node's room.
    pub(super) except: Vec<String>,
    /// The event name.
    pub(super) event: &'static str,
    /// The payload as JSON: the emission's borrowed payload does not outlive the call (shared
    /// with the publish and the recent list, never copied).
    pub(super) payload: std::sync::Arc<serde_json::Value>,
    /// Its connection state recovery offset (its last argument), if any.
    pub(super) offset: Option<String>,
}

/// Whether the node is in an outage, and what it kept meanwhile.
#[derive(Default)]
pub(super) struct OutageState {
    /// Redis is known to be unreachable: emissions go straight to the outage path.
    pub(super) down: bool,
    /// Events to publish once Redis is back, by `order`.
    kept: VecDeque<Kept>,
    /// Emissions of the last `RECENT` that asked for replay, by `order`, with when each was
    /// queued. See [`Ledger::reconnected`].
    recent: VecDeque<(std::time::Instant, Kept)>,
}

/// What the fan-out shares with the tasks that wait for its publishes' replies.
#[derive(Default)]
pub(super) struct Ledger {
    /// The outage flag and queue; a std lock, never held across an `.await`.
    outage: Mutex<OutageState>,
    /// Emissions queued whose publish Redis has not answered yet (a drain waits for them).
    pub(super) unconfirmed: AtomicUsize,
    /// Counts publishes that failed after their emission had returned (set once at start-up,
    /// by `RedisFanout::count_late_failures`).
    pub(super) failures: OnceLock<IntCounter>,
}

impl Ledger {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, OutageState> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers an emission being published, for `RECENT`.
    pub(super) fn remember(&self, k: &Kept) {
        let now = std::time::Instant::now();
        let mut outage = self.lock();
        while outage
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RECENT)
            || outage.recent.len() >= MAX_KEPT
        {
            outage.recent.pop_front();
        }
        outage.recent.push_back((now, k.clone()));
    }

    /// The pub/sub connection was re-established: enter the outage state, and keep for replay
    /// every emission of the last `RECENT` too. fred retries a command caught by a broken
    /// connection on the new one, and sends what was queued meanwhile, as soon as it is
    /// connected, before this node (let alone its peers, reconnecting on their own back-off)
    /// has re-subscribed: such a publish succeeds and reaches nobody. Not replaying them loses
    /// them; the ones that did reach a node are not delivered there again (each node delivers
    /// a recovery offset once: `recovery/seen.rs`).
    pub(super) fn reconnected(&self) {
        let now = std::time::Instant::now();
        let mut outage = self.lock();
        outage.down = true;
        // Only the last `RECENT`: the list is trimmed when an emission is remembered, so after
        // a quiet spell it still holds emissions that long reached everyone (replayed, they
        // reached every socket of the other nodes twice: the chaos soak's `exactly-once`).
        let recent: Vec<Kept> = outage
            .recent
            .drain(..)
            .filter(|(at, _)| now.duration_since(*at) <= RECENT)
            .map(|(_, k)| k)
            .collect();
        for k in recent {
            if outage.kept.iter().any(|other| other.order == k.order) {
                continue;
            }
            insert_in_order(&mut outage.kept, k);
        }
    }

    /// Marks the outage and keeps the event for replay, in its place by `order` (replies to
    /// pipelined publishes may fail in any order); returns what the emission's caller is told.
    pub(super) fn keep(&self, kept: Option<Kept>) -> FanoutError {
        let mut outage = self.lock();
        if !outage.down {
            tracing::warn!("Redis unreachable: delivering on this node only until it returns");
        }
        outage.down = true;
        let error = FanoutError(
            "Redis unreachable: delivered on this node; other nodes get it when Redis returns"
                .into(),
        );
        let Some(k) = kept else { return error };
        if outage.kept.len() >= MAX_KEPT {
            tracing::warn!(
                "outage queue full: dropped the oldest kept event (clients catch up with chat:sync)"
            );
        }
        if outage.kept.iter().any(|other| other.order == k.order) {
            // Already kept by a reconnect (`reconnected`).
            return error;
        }
        insert_in_order(&mut outage.kept, k);
        error
    }
}

impl Ledger {
    /// The kept events, in order, for a replay; `None` (and the outage over) once none are
    /// left.
    pub(super) fn take_kept(&self) -> Option<Vec<Kept>> {
        let mut outage = self.lock();
        if outage.kept.is_empty() {
            outage.down = false;
            return None;
        }
        Some(outage.kept.drain(..).collect())
    }

    /// Puts back, in front of anything kept meanwhile, the events a replay could not publish.
    pub(super) fn put_back(&self, rest: Vec<Kept>) {
        let mut outage = self.lock();
        for item in rest.into_iter().rev() {
            outage.kept.push_front(item);
        }
    }
}

/// Inserts `k` in its place by `order` (replies to pipelined publishes may fail in any order).
fn insert_in_order(kept: &mut VecDeque<Kept>, k: Kept) {
    if kept.len() >= MAX_KEPT {
        kept.pop_front();
    }
    let at = kept
        .iter()
        .rposition(|other| other.order < k.order)
        .map_or(0, |i| i + 1);
    kept.insert(at, k);
}
