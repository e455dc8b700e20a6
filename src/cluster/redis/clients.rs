//! The Redis connections of a cluster node, and how each is configured.
//!
//! `REDIS_URL` names one of three topologies ([`Topology`]), all parsed by fred's
//! `Config::from_url`:
//!
//! - `redis://` / `rediss://`: one server (or a managed primary behind one address);
//! - `redis-sentinel://[user:password@]sentinel:port[/db]?sentinelServiceName=NAME&node=host:port...`:
//!   the primary the Sentinels name, asked again on every reconnect, so a promoted replica is
//!   followed;
//! - `redis-cluster://[user:password@]host:port?node=host:port...`: a Redis Cluster, every
//!   command (and `SSUBSCRIBE` / `SPUBLISH`) routed to the master of its key's or channel's slot.
//!
//! [`RedisConnector`] is the one place that turns the URL into clients: [`connect`] opens the
//! node's two (one for presence, one subscriber for the adapter), and any other module that
//! keeps something in Redis asks the same connector for a client of the same topology
//! ([`RedisConnector::client`]). Every client speaks RESP3 (set by hand: fred's default is
//! RESP2), has `fail_fast = false` (a node started before Redis waits for it instead of exiting)
//! and retries forever, and every command has a timeout, so nothing waits on a dead Redis long.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{Builder, Client, ClientLike, Config, ReconnectPolicy};
use fred::types::RespVersion;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};

use super::driver::{Gaps, SubscriberDriver};

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

/// How many incoming pub/sub messages may wait in fred's broadcast channel, unless
/// `REDIS_SUBSCRIBER_BUFFER` says otherwise; each adapter stream after it holds
/// [`STREAM_DEPTH`] times as many. The broadcast channel is preallocated (about 200 bytes a
/// slot), the streams are not. A burst larger than this, arriving faster than the node
/// consumes it, overflows them: a gap (see [`super::driver`]), which closes this node's
/// transports so their clients resume.
pub const SUBSCRIBER_BUFFER: usize = 16_384;
/// How much deeper than fred's broadcast channel each adapter stream is.
const STREAM_DEPTH: usize = 16;

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

/// The kind of Redis deployment `REDIS_URL` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://`, `rediss://`), possibly a managed primary behind one address.
    Single,
    /// A primary found through Sentinels (`redis-sentinel://`).
    Sentinel,
    /// A Redis Cluster (`redis-cluster://`).
    Cluster,
}

impl Topology {
    /// How logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Sentinel => "sentinel",
            Topology::Cluster => "cluster",
        }
    }
}

/// `REDIS_URL`, parsed once, and the one place clients of its topology are made.
///
/// Cheap to clone. Whatever else a node keeps in Redis (the recovery log) takes its client from
/// here, so it follows a Sentinel failover or a cluster's slots exactly as presence does.
#[derive(Clone)]
pub struct RedisConnector {
    /// The parsed URL (credentials included: never logged).
    config: Config,
    /// Which topology the URL names.
    topology: Topology,
}

impl std::fmt::Debug for RedisConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisConnector")
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl RedisConnector {
    /// Parses `url`; a malformed URL (or a Sentinel URL without `sentinelServiceName`) is a
    /// configuration error, reported at boot.
    pub fn parse(url: &str) -> Result<Self, ClusterError> {
        let config = Config::from_url(url).map_err(|e| ClusterError::Config(e.to_string()))?;
        let topology = if config.server.is_clustered() {
            Topology::Cluster
        } else if config.server.is_sentinel() {
            Topology::Sentinel
        } else {
            Topology::Single
        };
        Ok(Self { config, topology })
    }

    /// The topology `REDIS_URL` names.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// A builder for a client of this topology: RESP3, retries forever (so a node can start
    /// before Redis), every command bounded by `command_timeout`.
    pub fn builder(&self, command_timeout: Duration) -> Builder {
        let mut config = self.config.clone();
        // fred speaks RESP2 unless told; sharded pub/sub messages and the adapter's replies
        // are read as RESP3 pushes.
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
        builder
    }

    /// A new command client of this topology (not yet connected: call `init`).
    pub fn client(&self, command_timeout: Duration) -> Result<Client, ClusterError> {
        self.builder(command_timeout).build().map_err(redis_error)
    }
}

/// A fred builder for `url` (see [`RedisConnector::builder`]).
pub fn builder(url: &str, command_timeout: Duration) -> Result<Builder, ClusterError> {
    Ok(RedisConnector::parse(url)?.builder(command_timeout))
}

/// The open Redis connections of a cluster node.
pub struct RedisClients {
    /// Where more clients of the same topology come from (for anything else kept in Redis).
    pub connector: RedisConnector,
    /// Presence commands, on a connection of their own so a flood of pub/sub traffic never
    /// delays a heartbeat.
    pub presence: Client,
    /// The adapter's pub/sub connection, kept so the supervisor can re-subscribe after
    /// reconnects (fred does not restore sharded subscriptions by itself).
    pub subscriber: SubscriberClient,
    /// The adapter constructor, for `SocketIo::builder().with_adapter`.
    pub adapter: RedisAdapterCtr<SubscriberDriver>,
    /// Where the subscriber reports messages it lost (the node closes its transports).
    pub gaps: Arc<Gaps>,
}

/// Connects to Redis, waiting as long as it takes for it to answer (a node may start first);
/// `buffer` is the subscriber's (see [`SUBSCRIBER_BUFFER`]).
pub async fn connect(url: &str, buffer: usize) -> Result<RedisClients, ClusterError> {
    let connector = RedisConnector::parse(url)?;
    let presence = connector.client(COMMAND_TIMEOUT)?;
    let subscriber = connector
        .builder(PUBLISH_TIMEOUT)
        // Every emission of every node arrives through this client's broadcast channel; fred's
        // default of 32 slots drops messages ("lagged") as soon as a burst outruns the task
        // that hands them to the adapter. See `SUBSCRIBER_BUFFER`.
        .with_performance_config(|p| p.broadcast_channel_capacity = buffer)
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
        // The streams' channels allocate as they fill (tokio's mpsc grows by blocks), so they
        // can be much deeper than fred's preallocated broadcast channel at no idle cost: a
        // backlog waits there instead of overflowing into a gap.
        .with_stream_buffer(buffer.saturating_mul(STREAM_DEPTH));
    let gaps = Arc::new(Gaps::default());
    let driver = SubscriberDriver::new(subscriber.clone(), gaps.clone())
        .await
        .map_err(redis_error)?;
    let adapter = RedisAdapterCtr::new_with_driver(driver, config);
    tracing::info!(
        topology = connector.topology().as_str(),
        "connected to Redis"
    );
    Ok(RedisClients {
        connector,
        presence,
        subscriber,
        adapter,
        gaps,
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
    fn a_sentinel_url_names_the_sentinels_and_the_service() {
        let url = "redis-sentinel://127.0.0.1:26379/1?sentinelServiceName=sb&node=127.0.0.1:26380&node=127.0.0.1:26381";
        let connector = RedisConnector::parse(url).unwrap();
        assert_eq!(connector.topology(), Topology::Sentinel);
        let config = connector
            .builder(COMMAND_TIMEOUT)
            .get_config()
            .unwrap()
            .clone();
        assert_eq!(config.version, RespVersion::RESP3);
        assert_eq!(config.database, Some(1));
        let fred::types::config::ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } = &config.server
        else {
            panic!("not a sentinel config: {:?}", config.server);
        };
        assert_eq!(service_name, "sb");
        let ports: Vec<u16> = hosts.iter().map(|h| h.port).collect();
        assert_eq!(ports.len(), 3, "every sentinel is known: {ports:?}");
        for port in [26379, 26380, 26381] {
            assert!(ports.contains(&port), "{ports:?}");
        }
    }

    #[test]
    fn a_sentinel_url_without_a_service_name_is_a_config_error() {
        assert!(matches!(
            RedisConnector::parse("redis-sentinel://127.0.0.1:26379"),
            Err(ClusterError::Config(_))
        ));
    }

    #[test]
    fn a_cluster_url_names_every_seed_node() {
        let url = "redis-cluster://:pw@127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002";
        let connector = RedisConnector::parse(url).unwrap();
        assert_eq!(connector.topology(), Topology::Cluster);
        let config = connector
            .builder(COMMAND_TIMEOUT)
            .get_config()
            .unwrap()
            .clone();
        assert_eq!(config.version, RespVersion::RESP3);
        assert_eq!(config.password.as_deref(), Some("pw"));
        let fred::types::config::ServerConfig::Clustered { hosts, .. } = &config.server else {
            panic!("not a cluster config: {:?}", config.server);
        };
        assert_eq!(hosts.len(), 3);
    }

    #[test]
    fn a_plain_url_is_a_single_server() {
        let connector = RedisConnector::parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(connector.topology(), Topology::Single);
    }

    #[test]
    fn a_malformed_url_is_a_config_error() {
        assert!(matches!(
            builder("not a url", COMMAND_TIMEOUT),
            Err(ClusterError::Config(_))
        ));
    }
}
