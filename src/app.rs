//! Assembly: the only place that picks concrete backends (store, presence, adapter), binds the
//! listener, and runs the node until a shutdown future resolves.
//!
//! `main` and every test use the same path: [`Application::build`] binds (port 0 picks a free
//! port), [`Application::port`] tells which, [`Application::run_until_stopped`] serves and, when
//! the shutdown future resolves, drains.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Keys;
use crate::cluster::redis::{ClusterAdapter, RedisFanout};
use crate::cluster::{self, Fanout};
use crate::config::Config;
use crate::connections::{TcpConnections, TrackedListener};
use crate::metrics::Metrics;
use crate::presence::{MemoryPresence, Presence, RedisPresence};
use crate::realtime::typing::TypingTracker;
use crate::store::{EmbeddedStore, MongoSettings, MongoStore, Store};

/// Everything a handler needs, shared by the REST router and every socket. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The node's shared parts.
pub struct Shared {
    pub config: Config,
    /// This node's name in presence and metrics.
    pub node_id: String,
    pub store: Arc<dyn Store>,
    pub presence: Arc<dyn Presence>,
    /// Room emissions, through whichever adapter `app.rs` chose.
    pub fanout: Arc<dyn Fanout>,
    /// Closes this node's sockets when it drains.
    pub sockets: Arc<dyn LocalSockets>,
    /// The main listener's TCP connections, closed in paced batches when the node drains.
    pub connections: TcpConnections,
    /// Sessions of sockets past the handshake middleware whose connect handler has not run yet
    /// (a socket's own extension map would cost about 150 bytes for its whole life).
    pub handshakes: crate::realtime::Handshakes,
    pub keys: Keys,
    pub metrics: Metrics,
    pub typing: TypingTracker,
    /// Whether the store and Redis answer, kept current by a watcher (what `/readyz` reads).
    pub readiness: crate::http::health::Readiness,
    /// Set once a drain starts: `/readyz` turns 503 and handshakes are refused.
    draining: AtomicBool,
    /// Client events being handled now; a drain waits for them to finish (and for the fan-out's
    /// unconfirmed emissions).
    in_flight: AtomicUsize,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks a client event as in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Mints a token with this node's key (HS* only): for `switchboard token` and tests.
    pub fn issue_token(
        &self,
        id: &str,
        role: crate::domain::Role,
        name: Option<&str>,
        ttl: Duration,
    ) -> Option<String> {
        self.keys.verifier.issue(id, role, name, ttl)
    }

    /// The graceful drain: turn `/readyz` 503 and refuse new sockets, wait `DRAIN_DELAY_SECS`
    /// so load balancers notice, withdraw our presence (announcing users left offline while the
    /// adapter can still reach other nodes), close our sockets' connections so clients reconnect
    /// elsewhere, then let in-flight events finish. Every step is bounded so that the drain ends
    /// within `grace`.
    pub async fn drain(&self, grace: Duration) {
        let deadline = drain_deadline(grace);
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.draining.set(1);
        tracing::info!(node = %self.node_id, "draining");
        tokio::time::sleep(Duration::from_secs(self.config.drain_delay_secs).min(grace / 2)).await;
        let withdraw = async {
            match self.presence.withdraw_node().await {
                Ok(users) => {
                    for user in users {
                        self.announce_status(&user, false).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not withdraw presence"),
            }
        };
        if tokio::time::timeout_at(deadline, withdraw).await.is_err() {
            tracing::warn!(node = %self.node_id, "grace period over before presence was withdrawn");
        }
        // Close the connections a few hundred at a time: each client sees its transport close
        // and reconnects (through the load balancer, to a ready node) without a stampede.
        // Whatever is left (long-polling sessions between requests) is closed at once after.
        let close = async {
            self.connections.close_paced(DRAIN_BATCH, DRAIN_PAUSE).await;
            self.sockets.close_all().await;
        };
        if tokio::time::timeout_at(deadline, close).await.is_err() {
            tracing::warn!(node = %self.node_id, "grace period over before every socket was closed");
        }
        while (self.in_flight.load(Ordering::Acquire) > 0 || self.fanout.unconfirmed() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(node = %self.node_id, in_flight = self.in_flight.load(Ordering::Acquire), "drained");
    }
}

/// Connections closed per batch during a drain, and the pause between batches.
const DRAIN_BATCH: usize = 200;
const DRAIN_PAUSE: Duration = Duration::from_millis(100);

/// When a drain that starts now must be over: the grace period less a margin for the process
/// to exit, so that it exits within `SHUTDOWN_GRACE_SECS` of the signal.
fn drain_deadline(grace: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + grace.saturating_sub(Duration::from_millis(500))
}

/// Keeps a client event counted as in flight.
pub struct InFlight(AppState);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// This node's own sockets, whatever the adapter.
pub trait LocalSockets: Send + Sync + 'static {
    /// Closes the connection of every local socket; resolves when they are closed.
    fn close_all(&self) -> futures_util::future::BoxFuture<'_, ()>;
}

impl<A: Adapter> LocalSockets for SocketIo<A> {
    /// Closes the transports, not the namespace sockets: a client told "io server disconnect"
    /// (a namespace disconnect) never reconnects on its own, while one that loses its
    /// transport reconnects, with its client's randomized back-off spreading the reconnects.
    fn close_all(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.close())
    }
}

/// A task that lives as long as the node runs (the cluster supervisor).
type Background = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// What every backend choice shares, before the presence and the adapter are known.
struct Parts {
    config: Config,
    node_id: String,
    store: Arc<dyn Store>,
    keys: Keys,
}

impl Parts {
    fn into_state(
        self,
        presence: Arc<dyn Presence>,
        fanout: Arc<dyn Fanout>,
        sockets: Arc<dyn LocalSockets>,
    ) -> AppState {
        AppState(Arc::new(Shared {
            metrics: Metrics::with_heartbeat_interval(
                &self.node_id,
                Duration::from_secs(self.config.heartbeat_interval_secs),
            ),
            fanout,
            sockets,
            node_id: self.node_id,
            store: self.store,
            presence,
            keys: self.keys,
            typing: TypingTracker::default(),
            readiness: Default::default(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            connections: TcpConnections::default(),
            handshakes: Default::default(),
            config: self.config,
        }))
    }
}

/// Wraps the router in the Socket.IO layer of whichever adapter was chosen.
fn with_layer<A: Adapter>(
    layer: socketioxide::layer::SocketIoLayer<A>,
) -> Box<dyn FnOnce(Router) -> Router + Send> {
    Box::new(move |router: Router| router.layer(layer))
}

/// A bound, ready-to-run node.
pub struct Application {
    listener: TrackedListener,
    metrics_listener: Option<TcpListener>,
    router: Router,
    state: AppState,
    /// Started by `run_until_stopped`, stopped with it.
    background: Vec<Background>,
}

impl Application {
    /// Validates the settings, opens the backends, binds the listener(s) and wires the routes.
    ///
    /// With `REDIS_URL` set this waits until Redis answers (a node may start before it).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let node_id = config.node_id();
        let keys = Keys::load(&config)?;
        let store: Arc<dyn Store> = match &config.mongodb_uri {
            // Never connects here: a node whose MongoDB is down still starts, not ready.
            Some(uri) => Arc::new(
                MongoStore::connect(MongoSettings {
                    uri: uri.clone(),
                    database: config.mongodb_database.clone(),
                    timeout: Duration::from_millis(config.mongodb_timeout_ms),
                    message_retention: config
                        .message_retention_days
                        .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
                })
                .await?,
            ),
            None => Arc::new(EmbeddedStore::open(&config.data_dir)?),
        };
        let parts = Parts {
            config,
            node_id,
            store,
            keys,
        };
        let (state, add_socket_layer, background) = match parts.config.redis_url.clone() {
            None => {
                let (layer, io) = socket_io_builder().build_layer();
                let state = parts.into_state(
                    Arc::new(MemoryPresence::new()),
                    Arc::new(io.clone()),
                    Arc::new(io.clone()),
                );
                crate::realtime::register(&io, state.clone());
                (state, with_layer(layer), Vec::new())
            }
            Some(url) => {
                let redis = cluster::redis::connect(&url).await?;
                let (layer, io) = socket_io_builder()
                    .with_adapter::<ClusterAdapter>(redis.adapter)
                    .build_layer();
                let fanout = Arc::new(RedisFanout::new(io.clone(), &parts.node_id));
                let ttl = Duration::from_secs(parts.config.presence_ttl_secs);
                let presence = Arc::new(RedisPresence::new(
                    redis.presence,
                    parts.node_id.clone(),
                    ttl,
                ));
                let state = parts.into_state(presence, fanout.clone(), Arc::new(io.clone()));
                fanout.count_late_failures(state.metrics.fanout_failures.clone());
                crate::realtime::register(&io, state.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("the Redis adapter could not subscribe: {e}"))?;
                let supervisor: Background = Box::pin(fanout.supervise(redis.subscriber, ttl));
                (state, with_layer(layer), vec![supervisor])
            }
        };

        // One probe before serving, so `/readyz` is right from the first request.
        crate::http::health::probe_dependencies(&state).await;
        let listener = state
            .connections
            .listener(TcpListener::bind(state.config.listen_addr()?).await?);
        let metrics_listener = match state.config.metrics_port {
            Some(port) => Some(TcpListener::bind((listener.local_addr()?.ip(), port)).await?),
            None => None,
        };
        let mut router = crate::http::router(state.clone());
        if metrics_listener.is_none() {
            router = router.merge(metrics_router(state.clone()));
        }
        let router = add_socket_layer(router)
            // Outside the Socket.IO layer: it must see the slimmed handshake (see `http/slim.rs`).
            .layer(axum::middleware::map_request(
                crate::http::slim::slim_handshake,
            ))
            .layer(cors(&state.config.cors_origins));
        tracing::info!(
            node = %state.node_id,
            addr = %listener.local_addr()?,
            store = if state.config.mongodb_uri.is_some() { "mongodb" } else { "embedded" },
            adapter = if state.config.redis_url.is_some() { "redis" } else { "memory" },
            "listening"
        );
        Ok(Self {
            listener,
            metrics_listener,
            router,
            state,
            background,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The port `/metrics` is served on.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or(self.port(), |a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains (within `SHUTDOWN_GRACE_SECS`) and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        // Dropping the set aborts its tasks, so they end with this future even if it is
        // cancelled rather than stopped.
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(crate::realtime::typing::sweep(state.clone()));
        tasks.spawn(heartbeat(state.clone()));
        tasks.spawn(crate::http::health::watch_dependencies(state.clone()));
        for task in self.background {
            tasks.spawn(task);
        }
        if let Some(l) = self.metrics_listener {
            let router = metrics_router(state.clone());
            tasks.spawn(async move {
                let _ = axum::serve(l, router).await;
            });
        }
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        let drain_state = state.clone();
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
        let stop = async move {
            shutdown.await;
            let deadline = drain_deadline(grace);
            drain_state.drain(grace).await;
            let _ = drained_tx.send(deadline);
        };
        // Turned into routes once here: served as a bare `Router`, axum clones the whole route
        // table (one allocation per route) for every accepted connection, ~74k instructions a
        // handshake in a callgrind profile.
        let router = self.router.with_state(()).into_make_service();
        let server = axum::serve(self.listener, router)
            .with_graceful_shutdown(stop)
            .into_future();
        tokio::pin!(server);
        // After the drain, open connections get a short while to finish (never past the grace
        // period), then are cut.
        let cut_off = async {
            if let Ok(deadline) = drained_rx.await {
                tokio::time::sleep_until(
                    deadline.min(tokio::time::Instant::now() + Duration::from_secs(2)),
                )
                .await;
            }
        };
        let result = tokio::select! {
            r = &mut server => r.map_err(anyhow::Error::from),
            () = cut_off => Ok(()),
        };
        tasks.abort_all();
        result
    }
}

/// The renewal loop: one per node, every `HEARTBEAT_INTERVAL_SECS`; announces the transitions
/// presence reports (users whose node died, sockets written back after an outage).
async fn heartbeat(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(state.config.heartbeat_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.is_draining() {
            continue;
        }
        let result = state.presence.heartbeat().await;
        state.metrics.presence_heartbeat(result.is_ok());
        match result {
            Ok(changes) => {
                let offline = changes.iter().filter(|c| !c.online).count();
                state.metrics.presence_reaped_users.inc_by(offline as u64);
                for change in changes {
                    state.announce_status(&change.user_id, change.online).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence heartbeat failed"),
        }
    }
}

fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        s.metrics.render(),
                    )
                },
            ),
        )
        .with_state(state)
}

/// Socket.IO settings shared by every adapter.
fn socket_io_builder() -> socketioxide::SocketIoBuilder {
    SocketIo::builder()
        // Each idle WebSocket keeps its read buffer; 256 bytes instead of the default 128 KiB
        // saves memory per connection. It holds a typing indicator, a read receipt or a short
        // chat message; larger frames still arrive, in more reads (the buffer grows as needed).
        .ws_read_buffer_size(256)
        // Packets a connection may have waiting before `emit` refuses more (socketioxide's
        // default is 128). The queue grows only while packets wait, so an idle connection pays
        // nothing for it; a burst to one socket (hundreds of reports at once, a busy room whose
        // writes are being coalesced) must not lose live deliveries.
        .max_buffer_size(1024)
        .max_payload(256 * 1024)
}

fn cors(origins: &str) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    if origins.trim() == "*" {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
}
