//! Cluster mode: the socketioxide Redis adapter (sharded pub/sub over fred) and a fan-out that
//! keeps working while Redis does not.
//!
//! # Layout
//!
//! - [`clients`]: the Redis connections a node opens ([`connect`], [`RedisClients`]) and how
//!   they are configured ([`builder`]).
//! - [`driver`]: the adapter's pub/sub driver, which turns a message lost on the way in into
//!   closed transports (clients resume from the recovery log) instead of a silent hole.
//! - [`fanout`]: [`RedisFanout`], which pipelines a sender's emissions and hands failed ones to
//!   the outage queue.
//! - [`outage`]: the outage queue (the events kept while Redis is unreachable) and their replay
//!   to the other nodes once it is back.
//! - [`supervisor`]: the per-node task that re-subscribes after reconnects and decides when to
//!   replay.
//!
//! # What a client sees during an outage
//!
//! Sends are saved and acknowledged as usual; sockets on the sender's node get every event
//! live; sockets on other nodes get the kept events (`message:new`, `message:read`, reports,
//! statuses: every emission whose [`Emission::keep_for_replay`](super::Emission) is set) when
//! Redis returns, once: an event whose first publish did reach a node (it timed out but had
//! gone through, or it was one of the emissions a reconnect keeps) is not delivered there again,
//! since a node delivers each recovery offset once ([`crate::recovery::SeenOffsets`]); typing
//! indicators from the outage are dropped. Whatever a client still
//! lacks (the queue is bounded, a node may die before replaying) it gets with `chat:sync` / REST
//! history, as after any reconnect.

use socketioxide::adapter::Emitter;
use socketioxide_redis::CustomRedisAdapter;

pub mod clients;
pub mod driver;
pub mod fanout;
pub mod outage;
pub mod supervisor;

pub use clients::{COMMAND_TIMEOUT, ClusterError, PUBLISH_TIMEOUT, RedisClients, builder, connect};
pub use fanout::RedisFanout;

/// The adapter every cluster node uses.
pub type ClusterAdapter = CustomRedisAdapter<Emitter, driver::SubscriberDriver>;
