//! The outage queue: events kept while Redis is unreachable, and their replay to the other
//! nodes once it is back.
//!
//! When a publish fails, or while Redis is known to be down, [`Ledger::keep`] marks the outage
//! and keeps the event (if its emission asks for replay) in a bounded queue, in its original
//! place among this node's emissions. Once Redis answers again and every peer is subscribed
//! again (or a presence TTL has passed), the supervisor ([`super::supervisor`]) re-subscribes,
//! then [`RedisFanout::replay`] publishes the kept events in their original order to the other
//! nodes only (this node's sockets, which already had them, are excluded through a per-node
//! room). New emissions queue behind them until the queue is empty, so a sender's messages keep
//! their order. A reconnect of the pub/sub connection also enters this state, since peers may
//! not hear anything until they re-subscribe.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use prometheus::IntCounter;

use super::clients::PUBLISH_TIMEOUT;
use super::fanout::RedisFanout;
use crate::cluster::FanoutError;

/// Events kept for replay during an outage; beyond it the oldest go (clients catch up by
/// `chat:sync`).
const MAX_KEPT: usize = 10_000;

/// An event whose publish failed, kept for replay.
pub(super) struct Kept {
    /// Its place among this node's emissions: kept events are replayed in this order.
    pub(super) order: u64,
    /// The emission's rooms, as it was first sent.
    pub(super) rooms: Vec<String>,
    /// The emission's excluded rooms; a replay adds this node's room.
    pub(super) except: Vec<String>,
    /// The event name.
    pub(super) event: &'static str,
    /// The payload as JSON: the emission's borrowed payload does not outlive the call.
    pub(super) payload: serde_json::Value,
}

/// Whether the node is in an outage, and what it kept meanwhile.
#[derive(Default)]
pub(super) struct OutageState {
    /// Redis is known to be unreachable: emissions go straight to the outage path.
    pub(super) down: bool,
    /// Events to publish once Redis is back, by `order`.
    kept: VecDeque<Kept>,
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
            outage.kept.pop_front();
            tracing::warn!(
                "outage queue full: dropped the oldest kept event (clients catch up with chat:sync)"
            );
        }
        let at = outage
            .kept
            .iter()
            .rposition(|other| other.order < k.order)
            .map_or(0, |i| i + 1);
        outage.kept.insert(at, k);
        error
    }
}

impl RedisFanout {
    /// Publishes the kept events to the other nodes, in order; leaves the outage when the
    /// queue is empty. Stops at the first failure (the next poll tries again).
    pub(super) async fn replay(&self) {
        // Every socket here already got the kept events live.
        let join = self.io.local().join(self.node_room.clone());
        if !matches!(
            tokio::time::timeout(PUBLISH_TIMEOUT, join).await,
            Ok(Ok(()))
        ) {
            return;
        }
        loop {
            let batch: Vec<Kept> = {
                let mut outage = self.lock();
                if outage.kept.is_empty() {
                    outage.down = false;
                    tracing::info!(
                        replayed = self.replayed(),
                        "Redis is back: cluster fan-out restored"
                    );
                    return;
                }
                outage.kept.drain(..).collect()
            };
            let mut pending = batch.into_iter();
            while let Some(k) = pending.next() {
                // Queued and awaited one at a time: a replay is rare and must keep its order.
                let mut except = k.except.clone();
                except.push(self.node_room.clone());
                let op = self
                    .io
                    .to(k.rooms.clone())
                    .except(except)
                    .emit(k.event, &k.payload);
                if matches!(tokio::time::timeout(PUBLISH_TIMEOUT, op).await, Ok(Ok(()))) {
                    self.replayed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut outage = self.lock();
                let rest: Vec<Kept> = std::iter::once(k).chain(pending).collect();
                for item in rest.into_iter().rev() {
                    outage.kept.push_front(item);
                }
                return;
            }
        }
    }
}
