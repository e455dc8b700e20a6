//! The Redis connections of a cluster node, and how each is configured.
//!
//! [`connect`] opens two fred clients from `REDIS_URL` (`redis://` or `rediss://`, user and
//! password in the URL), both RESP3 and with `fail_fast = false`, so a node started before Redis
//! waits for it instead of exiting: one for presence, one subscriber for the adapter. Every
//! command has a timeout, so nothing waits on a dead Redis for long.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{Builder, Client, ClientLike, Config, ReconnectPolicy};
use fred::types::RespVersion;
use socketioxide_redis::drivers::fred::FredDriver;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};

/// Bound on presence commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a publish; past it the emission takes the outage path.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest pause between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// The channel prefix of the adapter.
const CHANNEL_PREFIX: &str = "switchboard";
/// The adapter's request channel for namespace `/`, which every node subscribes to.
pub(super) const REQUEST_CHANNEL: &str = "switchboard-request#/#";

/// How many incoming pub/sub messages may wait to be handed to the adapter, in fred's broadcast
/// channel and then in each channel's stream. Preallocated (about 100 bytes a slot, for each
/// of the subscriber's few event channels), so a few MB per node; a burst larger than this,
/// arriving faster than the node consumes it, still loses messages (logged by the driver).
const SUBSCRIBER_BUFFER: usize = 16_384;

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL does not parse (a boot-time configuration error).
    #[error("REDIS_URL is not usable: {0}")]
    Config(String),
    /// Redis refused a connection or a command.
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
pub struct RedisClients {
    /// Presence commands, on a connection of their own so a flood of pub/sub traffic never
    /// delays a heartbeat.
    pub presence: Client,
    /// The adapter's pub/sub connection, kept so the supervisor can re-subscribe after
    /// reconnects (fred does not restore sharded subscriptions by itself).
    pub subscriber: SubscriberClient,
    /// The adapter constructor, for `SocketIo::builder().with_adapter`.
    pub adapter: RedisAdapterCtr<FredDriver>,
}

/// Connects to Redis, waiting as long as it takes for it to answer (a node may start first).
pub async fn connect(url: &str) -> Result<RedisClients, ClusterError> {
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
    Ok(RedisClients {
        presence,
        subscriber,
        adapter,
    })
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
