//! Cluster mode: the Redis connections, the socketioxide Redis adapter (sharded pub/sub over
//! fred), and a fan-out that keeps working while Redis does not.
//!
//! # Connections
//!
//! [`connect`] opens two fred clients from `REDIS_URL` (`redis://` or `rediss://`, user and
//! password in the URL), both RESP3 and with `fail_fast = false`, so a node started before Redis
//! waits for it instead of exiting: one for presence, one subscriber for the adapter. Every
//! command has a timeout, so nothing waits on a dead Redis for long.
//!
//! # Staying subscribed
//!
//! After a reconnect fred does not restore sharded subscriptions by itself (and its
//! `resubscribe_all` sends a bare `SUBSCRIBE` first, which fails when only shard channels are
//! tracked): the node would stop hearing the others while its own publishes still succeed.
//! [`RedisFanout::supervise`] re-issues `SSUBSCRIBE` for every tracked shard channel after each
//! reconnect.
//!
//! # Pipelined emissions
//!
//! The adapter (patched, `vendor/socketioxide-redis`) queues an emission's publish on the Redis
//! connection, hands the packet to this node's sockets, and only then waits for Redis's reply.
//! [`RedisFanout`] returns as soon as the emission is queued and waits for the reply in a task
//! of its own, so a sender's next emission is queued right behind it: fred writes one
//! connection's commands in the order they were queued and Redis delivers a channel's messages
//! in that order, so a sender's events still reach every node in order, and this node's sockets
//! get them in the order they were queued. Before, each emission waited for the previous one's
//! round trip to Redis, which capped one sender at about 400 emissions per second.
//!
//! # Outages
//!
//! [`RedisFanout`] bounds every publish with a timeout; when it fails, or while Redis is known
//! to be down:
//!
//! - the event is delivered to this node's own sockets at once (by the adapter when the publish
//!   was queued, by `io.local()` while Redis is known to be down);
//! - the event is kept (all but typing indicators, which are ephemeral) in a bounded queue;
//! - once Redis answers again and every peer is subscribed again (or a presence TTL has
//!   passed), the supervisor re-subscribes, then publishes the kept events in their original
//!   order (the order they were queued in) to the other nodes only (this node's sockets, which already had them, are excluded
//!   through a per-node room). New emissions queue behind them until the queue is empty, so a
//!   sender's messages keep their order. A reconnect of the pub/sub connection also enters this
//!   state, since peers may not hear anything until they re-subscribe.
//!
//! So during an outage: sends are saved and acknowledged as usual; sockets on the sender's node
//! get every event live; sockets on other nodes get the saved events (`message:new`,
//! `message:read`, reports, statuses) when Redis returns, possibly twice if a publish timed out
//! but had gone through (clients dedupe by message id / `seq`); typing indicators from the
//! outage are dropped. Whatever a client still lacks (the queue is bounded, a node may die
//! before replaying) it gets with `chat:sync` / REST history, as after any reconnect.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, Client, ClientLike, Config, EventInterface, PubsubInterface, ReconnectPolicy, Value,
};
use fred::types::RespVersion;
use prometheus::IntCounter;
use socketioxide::SocketIo;
use socketioxide::adapter::Emitter;
use socketioxide_core::adapter::errors::BroadcastError;
use socketioxide_redis::drivers::fred::FredDriver;
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};

use super::{Args, Emission, Fanout, FanoutError};

/// The adapter every cluster node uses.
pub type ClusterAdapter = FredAdapter<Emitter>;

/// Bound on presence commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a publish; past it the emission takes the outage path.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest pause between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// After Redis is back, how long a node waits before replaying: every live peer has made a
/// reconnection attempt by then (and re-subscribes as soon as it is connected).
const SETTLE: Duration = Duration::from_millis(2_500);
/// How often a node checks whether Redis is back while it is down.
const RECOVERY_POLL: Duration = Duration::from_millis(250);
/// Events kept for replay during an outage; beyond it the oldest go (clients catch up by
/// `chat:sync`).
const MAX_KEPT: usize = 10_000;
/// The channel prefix of the adapter.
const CHANNEL_PREFIX: &str = "switchboard";
/// The adapter's request channel for namespace `/`, which every node subscribes to.
const REQUEST_CHANNEL: &str = "switchboard-request#/#";

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("REDIS_URL is not usable: {0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(String),
}

fn redis_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Redis(e.to_string())
}

/// A fred builder for `url`: RESP3, retries forever (so a node can start before Redis), every
/// command bounded by `command_timeout`.
pub fn builder(url: &str, command_timeout: Duration) -> Result<Builder, ClusterError> {
    let mut config = Config::from_url(url).map_err(|e| ClusterError::Config(e.to_string()))?;
    config.version = RespVersion::RESP3;
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        // Unlimited attempts, 100 ms doubling to `MAX_RECONNECT_DELAY` between them.
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            100,
            MAX_RECONNECT_DELAY.as_millis() as u32,
            2,
        ))
        .with_performance_config(|p| p.default_command_timeout = command_timeout)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
        });
    Ok(builder)
}

/// The open Redis connections of a cluster node.
pub struct Connections {
    /// Presence commands.
    pub presence: Client,
    /// The adapter's pub/sub connection (kept to re-subscribe after reconnects).
    pub subscriber: SubscriberClient,
    /// The adapter constructor, for `SocketIo::builder().with_adapter`.
    pub adapter: RedisAdapterCtr<FredDriver>,
}

/// How many incoming pub/sub messages may wait to be handed to the adapter, in fred's broadcast
/// channel and then in each channel's stream. Preallocated (about 100 bytes a slot, for each
/// of the subscriber's few event channels), so a few MB per node; a burst larger than this,
/// arriving faster than the node consumes it, still loses messages (logged by the driver).
const SUBSCRIBER_BUFFER: usize = 16_384;

/// Connects to Redis, waiting as long as it takes for it to answer (a node may start first).
pub async fn connect(url: &str) -> Result<Connections, ClusterError> {
    let presence = builder(url, COMMAND_TIMEOUT)?
        .build()
        .map_err(redis_error)?;
    let subscriber = builder(url, PUBLISH_TIMEOUT)?
        // Every emission of every node arrives through this client's broadcast channel; fred's
        // default of 32 slots drops messages ("lagged") as soon as a burst outruns the task
        // that hands them to the adapter, and the loss is silent. See `SUBSCRIBER_BUFFER`.
        .with_performance_config(|p| p.broadcast_channel_capacity = SUBSCRIBER_BUFFER)
        .build_subscriber_client()
        .map_err(redis_error)?;
    {
        let init = presence.init();
        tokio::pin!(init);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), &mut init).await {
                Ok(result) => {
                    result.map_err(redis_error)?;
                    break;
                }
                Err(_) => tracing::warn!("waiting for Redis (REDIS_URL) to answer"),
            }
        }
    }
    let config = RedisAdapterConfig::new()
        .with_prefix(CHANNEL_PREFIX)
        .with_stream_buffer(SUBSCRIBER_BUFFER);
    let adapter = RedisAdapterCtr::new_with_fred_config(subscriber.clone(), config)
        .await
        .map_err(redis_error)?;
    tracing::info!("connected to Redis");
    Ok(Connections {
        presence,
        subscriber,
        adapter,
    })
}

/// An event whose publish failed, kept for replay.
struct Kept {
    /// Its place among this node's emissions: kept events are replayed in this order.
    order: u64,
    rooms: Vec<String>,
    except: Vec<String>,
    event: &'static str,
    payload: serde_json::Value,
    /// Its connection state recovery offset (its last argument), if any.
    offset: Option<String>,
}

#[derive(Default)]
struct Outage {
    /// Redis is known to be unreachable: emissions go straight to the outage path.
    down: bool,
    /// Events to publish once Redis is back, by `order`.
    kept: VecDeque<Kept>,
}

/// What the fan-out shares with the tasks that wait for its publishes' replies.
#[derive(Default)]
struct Shared {
    outage: Mutex<Outage>,
    /// Emissions queued whose publish Redis has not answered yet.
    unconfirmed: AtomicUsize,
    /// Counts publishes that failed after their emission had returned.
    failures: OnceLock<IntCounter>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the outage and keeps the event for replay, in its place by `order` (replies to
    /// pipelined publishes may fail in any order); returns what the emission's caller is told.
    fn keep(&self, kept: Option<Kept>) -> FanoutError {
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

/// Fan-out through the Redis adapter, with the pipelining and outage behaviour of the module
/// doc.
pub struct RedisFanout {
    io: SocketIo<ClusterAdapter>,
    /// A room every local socket joins before a replay, so the replay skips this node.
    node_room: String,
    shared: Arc<Shared>,
    /// The next emission's `order`.
    next_order: AtomicU64,
    /// Events published by a replay.
    replayed: AtomicU64,
}

impl RedisFanout {
    pub fn new(io: SocketIo<ClusterAdapter>, node_id: &str) -> Self {
        Self {
            io,
            node_room: format!("node:{node_id}"),
            shared: Arc::default(),
            next_order: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
        }
    }

    /// Counts in `failures` the publishes that fail once their emission has returned (the
    /// others are counted by the caller).
    pub fn count_late_failures(&self, failures: IntCounter) {
        let _ = self.shared.failures.set(failures);
    }

    /// Is the node in an outage (Redis unreachable, or kept events not yet replayed)?
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Events replayed to other nodes since start.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.shared.lock()
    }

    async fn deliver_locally(&self, e: &Emission<'_>) {
        let mut op = self.io.local().to(e.rooms.clone());
        if !e.except.is_empty() {
            op = op.except(e.except.clone());
        }
        let args = Args {
            payload: e.payload,
            offset: e.offset,
        };
        if let Err(err) = op.emit(e.event, &args).await {
            tracing::debug!(event = e.event, error = %err, "local delivery incomplete");
        }
    }

    /// Publishes `e` (queued behind this node's earlier emissions) and delivers it to this
    /// node's sockets. Returns once both are done, or the outcome if Redis answered at once; the
    /// reply is awaited in a task of its own, which keeps the event for replay if the publish
    /// fails.
    async fn publish(&self, e: Emission<'_>, order: u64) -> Result<(), FanoutError> {
        let payload =
            serde_json::to_value(e.payload).map_err(|err| FanoutError(err.to_string()))?;
        let offset = e.offset.map(str::to_owned);
        let Emission {
            rooms,
            except,
            event,
            ..
        } = e;
        let (io, shared) = (self.io.clone(), self.shared.clone());
        let mut publish = Box::pin(async move {
            let mut op = io.to(rooms.clone());
            if !except.is_empty() {
                op = op.except(except.clone());
            }
            // A little over fred's own command timeout, which normally answers first.
            let result = tokio::time::timeout(
                PUBLISH_TIMEOUT + Duration::from_millis(250),
                op.emit(
                    event,
                    &Args {
                        payload: &payload,
                        offset: offset.as_deref(),
                    },
                ),
            )
            .await;
            match result {
                Ok(Ok(())) => return Ok(()),
                // The publish went out; only some local socket could not take the packet.
                Ok(Err(BroadcastError::Socket(errs))) => {
                    return Err(FanoutError(format!(
                        "{} local socket(s) unreachable",
                        errs.len()
                    )));
                }
                Ok(Err(BroadcastError::Serialize(err))) => {
                    return Err(FanoutError(err.to_string()));
                }
                Ok(Err(err)) => tracing::warn!(event, error = %err, "publish failed"),
                Err(_) => tracing::warn!(event, "publish timed out"),
            }
            // This node's sockets got it when the publish was queued.
            Err(shared.keep(kept(order, rooms, except, event, payload, offset)))
        });
        // The first poll queues the publish and delivers locally (see the module doc).
        match std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let shared = self.shared.clone();
                shared.unconfirmed.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(async move {
                    if let Err(e) = publish.await {
                        if let Some(failures) = shared.failures.get() {
                            failures.inc();
                        }
                        tracing::warn!(event, error = %e, "emission failed");
                    }
                    shared.unconfirmed.fetch_sub(1, Ordering::AcqRel);
                });
                Ok(())
            }
        }
    }

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
                    self.lock().down = true;
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

    /// Publishes the kept events to the other nodes, in order; leaves the outage when the
    /// queue is empty. Stops at the first failure (the next poll tries again).
    async fn replay(&self) {
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
                let args = Args {
                    payload: &k.payload,
                    offset: k.offset.as_deref(),
                };
                let op = self
                    .io
                    .to(k.rooms.clone())
                    .except(except)
                    .emit(k.event, &args);
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

/// What an outage keeps of an event: all but typing indicators, which are ephemeral.
fn kept(
    order: u64,
    rooms: Vec<String>,
    except: Vec<String>,
    event: &'static str,
    payload: serde_json::Value,
    offset: Option<String>,
) -> Option<Kept> {
    (event != crate::service::events::USER_TYPING).then_some(Kept {
        order,
        rooms,
        except,
        event,
        payload,
        offset,
    })
}

impl Fanout for RedisFanout {
    fn emit<'a>(
        &'a self,
        e: Emission<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), FanoutError>> + Send + 'a>> {
        Box::pin(async move {
            let order = self.next_order.fetch_add(1, Ordering::Relaxed);
            if !self.is_down() {
                return self.publish(e, order).await;
            }
            self.deliver_locally(&e).await;
            let payload = serde_json::to_value(e.payload).ok();
            Err(self.shared.keep(payload.and_then(|p| {
                let offset = e.offset.map(str::to_owned);
                kept(order, e.rooms, e.except, e.event, p, offset)
            })))
        })
    }

    fn unconfirmed(&self) -> usize {
        self.shared.unconfirmed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_gives_resp3_patient_clients_with_credentials() {
        let b = builder("redis://user:secret@db.internal:6380/2", COMMAND_TIMEOUT).unwrap();
        let config = b.get_config().unwrap();
        assert_eq!(config.version, RespVersion::RESP3);
        assert!(
            !config.fail_fast,
            "a node must be able to start before Redis"
        );
        assert_eq!(
            (config.username.as_deref(), config.password.as_deref()),
            (Some("user"), Some("secret"))
        );
        assert_eq!(config.database, Some(2));
        assert!(config.tls.is_none());
        assert_eq!(
            b.get_performance_config().default_command_timeout,
            COMMAND_TIMEOUT
        );
    }

    #[test]
    fn rediss_url_turns_tls_on() {
        let b = builder("rediss://:secret@db.internal:6380", COMMAND_TIMEOUT).unwrap();
        let config = b.get_config().unwrap();
        assert!(config.tls.is_some(), "rediss:// must use TLS");
        assert_eq!(config.password.as_deref(), Some("secret"));
    }

    #[test]
    fn a_malformed_url_is_a_config_error() {
        assert!(matches!(
            builder("not a url", COMMAND_TIMEOUT),
            Err(ClusterError::Config(_))
        ));
    }
}
