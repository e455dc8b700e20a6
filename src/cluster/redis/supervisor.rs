//! The supervisor: the per-node task that keeps the adapter subscribed and decides when the
//! outage queue is replayed.
//!
//! After a reconnect fred does not restore sharded subscriptions by itself (and its
//! `resubscribe_all` sends a bare `SUBSCRIBE` first, which fails when only shard channels are
//! tracked): the node would stop hearing the others while its own publishes still succeed.
//! [`RedisFanout::supervise`] re-issues `SSUBSCRIBE` for every tracked shard channel after each
//! reconnect, and replays the kept events once every peer had time to do the same.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{EventInterface, PubsubInterface, Value};

use super::clients::{PUBLISH_TIMEOUT, REQUEST_CHANNEL};
use super::fanout::RedisFanout;

/// After Redis is back, how long a node waits before replaying: every live peer has made a
/// reconnection attempt by then (and re-subscribes as soon as it is connected).
const SETTLE: Duration = Duration::from_millis(2_500);
/// How often a node checks whether Redis is back while it is down.
const RECOVERY_POLL: Duration = Duration::from_millis(250);

impl RedisFanout {
    /// Keeps the node subscribed and replays kept events once Redis is back. Runs for the
    /// node's lifetime.
    ///
    /// After a reconnect the other nodes may not be subscribed again yet, so this node also
    /// enters the outage state: what it emits is kept until every peer had time to reconnect
    /// (`SETTLE`) and the request channel has as many subscribers as before the outage, or
    /// `peer_wait` has passed (a peer died meanwhile), and only then replayed.
    pub async fn supervise(
        self: std::sync::Arc<Self>,
        subscriber: SubscriberClient,
        peer_wait: Duration,
    ) {
        let mut reconnects = subscriber.reconnect_rx();
        let mut tick = tokio::time::interval(RECOVERY_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut subscribed = true;
        // Nodes subscribed to the request channel when last sampled in good health.
        let mut peers: u16 = 0;
        // When Redis was first seen answering again in the current outage.
        let mut back_since: Option<tokio::time::Instant> = None;
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                r = reconnects.recv() => {
                    if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    tracing::info!("Redis connection re-established: re-subscribing");
                    self.ledger.reconnected();
                    subscribed = resubscribe(&subscriber).await;
                }
                _ = tick.tick() => {
                    ticks += 1;
                    if !subscribed {
                        subscribed = resubscribe(&subscriber).await;
                        continue;
                    }
                    if !self.is_down() {
                        back_since = None;
                        if ticks % 2 == 1
                            && let Some(n) = subscribers(&subscriber).await
                        {
                            peers = n;
                        }
                        continue;
                    }
                    let Some(n) = subscribers(&subscriber).await else {
                        back_since = None;
                        continue;
                    };
                    let since = back_since.get_or_insert_with(tokio::time::Instant::now).elapsed();
                    let peers_back = n >= peers && since >= SETTLE;
                    if !peers_back && since < peer_wait {
                        continue;
                    }
                    // Re-subscribing again is harmless and covers a reconnect we missed.
                    subscribed = resubscribe(&subscriber).await;
                    if subscribed {
                        self.replay().await;
                    }
                }
            }
        }
    }
}

/// How many nodes listen on the adapter's request channel (`None` while Redis does not answer).
async fn subscribers(client: &SubscriberClient) -> Option<u16> {
    // `[channel, count]` (a map under some RESP3 servers: flattened the same way).
    let call = client.pubsub_shardnumsub::<Value, _>(REQUEST_CHANNEL);
    match tokio::time::timeout(PUBLISH_TIMEOUT, call).await {
        Ok(Ok(v)) => v
            .into_array()
            .last()
            .and_then(Value::as_i64)
            .map(|n| n.clamp(0, u16::MAX as i64) as u16),
        _ => None,
    }
}

/// Re-issues `SSUBSCRIBE` for every shard channel the adapter subscribed to.
async fn resubscribe(client: &SubscriberClient) -> bool {
    for channel in client.tracked_shard_channels() {
        let call = client.ssubscribe(channel.to_string());
        match tokio::time::timeout(PUBLISH_TIMEOUT * 2, call).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(channel = %channel, error = %e, "re-subscribe failed; retrying");
                return false;
            }
            Err(_) => {
                tracing::warn!(channel = %channel, "re-subscribe timed out; retrying");
                return false;
            }
        }
    }
    true
}
