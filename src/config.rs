//! Settings: every variable of PROTOCOL.md's Configuration table, each an environment variable
//! and a command-line flag (flags win), documented in `switchboard --help`, except the secrets
//! ([`SECRET_VARIABLES`]), which are read from the environment only: a flag's value is readable
//! by every local user through `ps`. Secrets are [`Secret`]s, whose `Debug` shows nothing.

mod assignment;
mod secrets;
mod validate;
mod webhooks;
pub use assignment::{AssignmentMode, AssignmentSettings};
pub use secrets::{SECRET_VARIABLES, Secret};
pub use webhooks::WebhookSettings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::Role;

/// Switchboard: a horizontally scaled Socket.IO support-chat server.
///
/// With no settings it runs one complete node: in-memory adapter and presence, and an embedded
/// on-disk store in DATA_DIR.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about, after_help = secrets::SECRETS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

impl Cli {
    /// The command line, with the secrets read from the environment.
    pub fn load() -> Self {
        let mut cli = Self::parse();
        cli.config.read_secrets(|name| std::env::var(name).ok());
        cli
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a token signed with this node's secret (JWT_SECRET, or the development secret kept
    /// in DATA_DIR).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`id` claim).
    #[arg(long)]
    pub id: String,
    /// `user`, `admin` or `superadmin`.
    #[arg(long, value_enum, default_value_t = Role::User)]
    pub role: Role,
    /// Display name (`name` claim); defaults to the id.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime: a number with `s`, `m`, `h` or `d` (for example `30m`, `1h`, `7d`).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

/// `--role` takes a role as tokens spell it ([`Role::as_str`]); implemented here, not derived,
/// so `domain` needs no clap.
impl ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::User, Role::Admin, Role::Superadmin]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Where the process runs; `production` refuses unsafe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The JWT algorithms a deployment may pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "verbatim")]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    EdDSA,
}

/// The most clock skew `JWT_LEEWAY_SECS` may allow (PROTOCOL.md: at most 30 s of leeway).
pub const MAX_JWT_LEEWAY_SECS: u64 = 30;

/// `SOCKET_QUEUE_BYTES` by default: 4 MiB.
pub const DEFAULT_SOCKET_QUEUE_BYTES: usize = 4 << 20;

/// A node's settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (REST, Socket.IO and, unless METRICS_PORT is set, /metrics).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "PORT", default_value_t = 5001)]
    pub port: u16,
    /// Serve /metrics on this port instead of the main one.
    #[arg(long, env = "METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// `JWT_SECRET` (environment only): the HS256 secret. In development a generated one is
    /// kept in DATA_DIR; required in production.
    #[arg(skip)]
    pub jwt_secret: Option<Secret>,
    /// PEM public key file: verify asymmetric tokens (RS256, ES256, EdDSA, ...) instead.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The one algorithm accepted; never taken from the token header.
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value = "HS256")]
    pub jwt_algorithm: JwtAlgorithm,
    /// When set, a token must carry this `aud` (set it when the signing key is shared with other
    /// services, so their tokens do not open this one).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// When set, a token must carry this `iss` (the one service that issues its tokens).
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Clock skew allowed between the token issuer and this node, in seconds (at most 30): a
    /// token is accepted until `exp` plus this, and from `nbf` minus this; a live socket's
    /// transport is closed when `exp` plus this passes.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// `FILE_URL_SECRET` (environment only): the key for the `sig` of file URLs. Defaults to
    /// one derived from JWT_SECRET (or kept in DATA_DIR); every node of a cluster must share it.
    #[arg(skip)]
    pub file_url_secret: Option<Secret>,
    /// `MONGODB_URI` (environment only: it may carry a password): unset keeps the embedded
    /// store.
    #[arg(skip)]
    pub mongodb_uri: Option<Secret>,
    /// MongoDB database name.
    #[arg(long, env = "MONGODB_DATABASE", default_value = "switchboard")]
    pub mongodb_database: String,
    /// Upper bound for one MongoDB store operation (and for finding a reachable server), in
    /// milliseconds. Past it the operation fails with UNAVAILABLE instead of hanging.
    #[arg(
        long = "mongodb-timeout-ms",
        value_name = "MONGODB_TIMEOUT_MS",
        env = "MONGODB_TIMEOUT_MS",
        default_value = "3000",
        value_parser = millis
    )]
    pub mongodb_timeout: Duration,
    /// MongoDB store only: delete chat messages older than this many days (a TTL index on the
    /// message timestamp). Unset keeps messages forever.
    #[arg(long, env = "MESSAGE_RETENTION_DAYS")]
    pub message_retention_days: Option<u32>,
    /// The embedded store's files, and uploads in embedded mode.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `REDIS_URL` (environment only: it may carry a password); set, it makes this node part
    /// of a cluster (see `SECRETS_HELP` and docs/cluster.md).
    #[arg(skip)]
    pub redis_url: Option<Secret>,
    /// Redis only: how many incoming pub/sub messages may wait to be handed to this node's
    /// sockets (fred's channel, then each adapter stream). A burst beyond it closes this node's
    /// transports so that their clients resume from the recovery log (docs/cluster.md).
    #[arg(
        long,
        env = "REDIS_SUBSCRIBER_BUFFER",
        default_value_t = crate::cluster::redis::clients::SUBSCRIBER_BUFFER,
        value_parser = buffer_slots
    )]
    pub redis_subscriber_buffer: usize,
    /// This node's name in presence and metrics; defaults to the host name plus a random suffix.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// How long a silent node's sockets still count, in seconds.
    #[arg(
        long = "presence-ttl-secs",
        value_name = "PRESENCE_TTL_SECS",
        env = "PRESENCE_TTL_SECS",
        default_value = "15",
        value_parser = secs
    )]
    pub presence_ttl: Duration,
    /// How often a node renews its presence, in seconds.
    #[arg(
        long = "heartbeat-interval-secs",
        value_name = "HEARTBEAT_INTERVAL_SECS",
        env = "HEARTBEAT_INTERVAL_SECS",
        default_value = "5",
        value_parser = secs
    )]
    pub heartbeat_interval: Duration,
    /// Comma-separated allowed origins (`*` allows any).
    #[arg(long, env = "CORS_ORIGINS", default_value = "http://localhost:3000")]
    pub cors_origins: String,
    /// The address clients reach the cluster at (for example https://chat.example.com); set,
    /// `fileUrl` values are absolute under it, so a frontend on another origin can use them.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Events a socket may send per second on average (bursts of twice that); also each user's
    /// budget of REST writes (POST and PATCH, uploads included) on each node, and each user's
    /// budget of `message:send` over all their sockets on each node.
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value_t = 20)]
    pub rate_limit_per_sec: u32,
    /// Sockets one user may hold in the cluster; a handshake beyond is refused (RATE_LIMITED).
    #[arg(long, env = "MAX_SOCKETS_PER_USER", default_value_t = 32)]
    pub max_sockets_per_user: u32,
    /// How long a user's last socket may be gone before `user:status offline` goes out, in
    /// seconds (a reload, a blip or a drain the user comes back from within it shows nothing).
    #[arg(
        long = "offline-grace-secs",
        value_name = "OFFLINE_GRACE_SECS",
        env = "OFFLINE_GRACE_SECS",
        default_value = "5",
        value_parser = secs
    )]
    pub offline_grace: Duration,
    /// How long a dropped session can be recovered, in seconds (socket.io's
    /// `maxDisconnectionDuration`); the recovery log keeps this much. 0 turns recovery off.
    #[arg(
        long = "recovery-window-secs",
        value_name = "RECOVERY_WINDOW_SECS",
        env = "RECOVERY_WINDOW_SECS",
        default_value = "120",
        value_parser = secs
    )]
    pub recovery_window: Duration,
    /// How often the server pings each connection, in milliseconds (Engine.IO `pingInterval`).
    #[arg(
        long = "ping-interval-ms",
        value_name = "PING_INTERVAL_MS",
        env = "PING_INTERVAL_MS",
        default_value = "25000",
        value_parser = millis
    )]
    pub ping_interval: Duration,
    /// How long a pong may take, in milliseconds (Engine.IO `pingTimeout`). A long-polling
    /// session that makes no `GET` for `PING_INTERVAL_MS + PING_TIMEOUT_MS` is closed too,
    /// whatever it POSTs.
    #[arg(
        long = "ping-timeout-ms",
        value_name = "PING_TIMEOUT_MS",
        env = "PING_TIMEOUT_MS",
        default_value = "20000",
        value_parser = millis
    )]
    pub ping_timeout: Duration,
    /// The most bytes one connection may have waiting to be sent to it: a reply or event that
    /// would take it past this closes the connection (one packet alone always fits). Bounds what
    /// a client that stops reading makes the node hold (docs/security.md).
    #[arg(long, env = "SOCKET_QUEUE_BYTES", default_value_t = DEFAULT_SOCKET_QUEUE_BYTES)]
    pub socket_queue_bytes: usize,
    /// Connection state recovery resumes (handshakes carrying a `pid`) one user may make a
    /// minute on each node, as many at once; beyond it a resume gets a new session instead.
    #[arg(long, env = "RECOVERY_RESUMES_PER_MIN", default_value_t = 64)]
    pub recovery_resumes_per_min: u32,
    /// The recovery log's byte budget (the Redis stream, or the embedded log), kept by a
    /// trimmer every second: the oldest entries go first, and a resume from before them is
    /// refused as expired.
    #[arg(long, env = "RECOVERY_LOG_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub recovery_log_max_bytes: u64,
    /// The byte budget of each node's cache of the recovery log's tail (what replays read).
    #[arg(long, env = "RECOVERY_TAIL_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub recovery_tail_max_bytes: u64,
    /// The most bytes of messages one history page or `chat:sync` answer carries (at least one
    /// message; `hasMore` says the rest).
    #[arg(long, env = "PAGE_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub page_max_bytes: usize,
    /// Log output; `pretty` on a terminal, else `json`. RUST_LOG filters.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// `production` refuses unsafe defaults (no secret, embedded store behind several nodes).
    #[arg(
        long = "env",
        env = "SWITCHBOARD_ENV",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,
    /// How long a SIGTERM drain may take before the node exits anyway, in seconds.
    #[arg(
        long = "shutdown-grace-secs",
        value_name = "SHUTDOWN_GRACE_SECS",
        env = "SHUTDOWN_GRACE_SECS",
        default_value = "20",
        value_parser = secs
    )]
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long to keep serving with /readyz at 503 before closing sockets, in
    /// seconds, so load balancers stop sending new clients here first (at most half the grace).
    #[arg(
        long = "drain-delay-secs",
        value_name = "DRAIN_DELAY_SECS",
        env = "DRAIN_DELAY_SECS",
        default_value = "0",
        value_parser = secs
    )]
    pub drain_delay: Duration,
    /// The most Socket.IO sockets this node holds; a new session beyond is refused at once
    /// (HTTP 503, Retry-After: 1) and socket.io-client retries with its back-off, through the
    /// load balancer to another node. Unset: no limit but the process's open-file limit.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// The most new sessions this node opens per second (bursts of one second's worth); beyond,
    /// refused like MAX_CONNECTIONS. Unset: no limit.
    #[arg(long, env = "MAX_HANDSHAKES_PER_SEC")]
    pub max_handshakes_per_sec: Option<u32>,
    /// Address the METRICS_PORT listener binds: loopback unless set (for example 0.0.0.0 for a
    /// Prometheus in another container or pod). Unused without METRICS_PORT.
    #[arg(long, env = "METRICS_HOST", default_value = "127.0.0.1")]
    pub metrics_host: String,
    /// Deadline for a whole request (head and body), in seconds, from when the connection starts
    /// waiting for it (its opening, or the previous response); also the
    /// longest a response or WebSocket write may make no progress (a client that stops reading
    /// is cut off). Uploads have UPLOAD_TIMEOUT_SECS instead.
    #[arg(
        long = "request-timeout-secs",
        value_name = "REQUEST_TIMEOUT_SECS",
        env = "REQUEST_TIMEOUT_SECS",
        default_value = "30",
        value_parser = secs
    )]
    pub request_timeout: Duration,
    /// Deadline for a whole `POST /api/uploads` request, in seconds (10 MiB over a slow link).
    #[arg(
        long = "upload-timeout-secs",
        value_name = "UPLOAD_TIMEOUT_SECS",
        env = "UPLOAD_TIMEOUT_SECS",
        default_value = "300",
        value_parser = secs
    )]
    pub upload_timeout: Duration,
    /// Bytes one user may upload per UTC day, across the cluster (counted from the store); an
    /// upload past it is refused with RATE_LIMITED and nothing is kept.
    #[arg(long, env = "UPLOAD_BYTES_PER_DAY", default_value_t = 256 * 1024 * 1024)]
    pub upload_bytes_per_day: u64,
    /// How long the audit log of staff actions keeps an entry, in days (1 to 36500); each node
    /// deletes older entries when it starts and every hour.
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u32,
    /// Webhooks (PROTOCOL.md, "Webhooks"; docs/webhooks.md).
    #[command(flatten)]
    pub webhooks: WebhookSettings,
    /// The support desk's assignment (PROTOCOL.md, "The support desk"; docs/support-desk.md).
    #[command(flatten)]
    pub assignment: AssignmentSettings,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Fills the secrets ([`SECRET_VARIABLES`]) from `var` (the environment); an empty value is
    /// unset, as for every other setting.
    pub fn read_secrets(&mut self, var: impl Fn(&str) -> Option<String>) {
        let read = |name: &str| var(name).filter(|v| !v.is_empty()).map(Secret::from);
        self.jwt_secret = read("JWT_SECRET");
        self.file_url_secret = read("FILE_URL_SECRET");
        self.mongodb_uri = read("MONGODB_URI");
        self.redis_url = read("REDIS_URL");
        self.webhooks.secret = read("WEBHOOK_SECRET");
    }

    /// `PUBLIC_URL` without its trailing slashes (validated by [`Config::validate`]).
    pub fn public_url(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
    }

    pub fn is_asymmetric(&self) -> bool {
        !matches!(
            self.jwt_algorithm,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}", self.port)
            .parse()
            .map_err(|_| ConfigError(format!("HOST {} is not an IP address", self.host)))
    }

    /// This node's name: NODE_ID, or the host name plus a random suffix.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "switchboard".into());
            format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
        })
    }

    /// Settings for tests: everything at its default, on `127.0.0.1:0`, whatever the
    /// environment holds (a developer's `REDIS_URL` or `MONGODB_URI` must not turn a test into
    /// a cluster or MongoDB test).
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_tests(data_dir: PathBuf) -> Self {
        use clap::FromArgMatches;
        let matches = defaults_command()
            .try_get_matches_from(["switchboard"])
            .expect("the defaults parse");
        let mut cfg = Config::from_arg_matches(&matches).expect("the defaults are a Config");
        cfg.host = "127.0.0.1".into();
        cfg.port = 0;
        cfg.data_dir = data_dir;
        // Presence tests see `offline` as soon as the last socket goes; the grace has tests of
        // its own (tests/js/test/recovery.test.js).
        cfg.offline_grace = Duration::ZERO;
        cfg
    }
}

/// The command line of [`Config`] with no environment variable attached to any argument, so
/// parsing it gives the declared defaults only (clap reads an argument's `env` variable
/// whenever the flag is absent).
#[cfg(any(test, feature = "test-support"))]
fn defaults_command() -> clap::Command {
    Config::augment_args(clap::Command::new("switchboard")).mut_args(|arg| arg.env(None::<&str>))
}

/// A setting in whole seconds (a `*_SECS` variable), kept as the `Duration` it means.
fn secs(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("{e}"))
}

/// A setting in whole milliseconds (a `*_MS` variable), kept as the `Duration` it means.
/// A buffer's slot count: 1 to 1,048,576 (each slot is preallocated).
fn buffer_slots(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=1_048_576) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number from 1 to 1048576")),
    }
}

fn millis(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{e}"))
}

/// Parses a lifetime such as `90s`, `30m`, `1h` or `7d`.
pub fn parse_ttl(s: &str) -> Result<std::time::Duration, ConfigError> {
    let bad = || ConfigError(format!("--ttl {s}: expected a number with s, m, h or d"));
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
