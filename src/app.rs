//! Assembly: the only place that picks concrete backends (store, presence, adapter), builds the
//! node's [`AppState`] from them, binds the listener, runs the node until a shutdown future
//! resolves, then drains. The top of the dependency graph: nothing imports `app` but `lib.rs`.
//!
//! `main` and every test use the same path: [`Application::build`] binds (port 0 picks a free
//! port), [`Application::port`] tells which, [`Application::run_until_stopped`] serves and, when
//! the shutdown future resolves, drains.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Keys;
use crate::cluster;
use crate::cluster::redis::{ClusterAdapter, RedisFanout};
use crate::config::Config;
use crate::connections::TrackedListener;
use crate::http::origin::AllowedOrigins;
use crate::ordering::Turn;
use crate::presence::{
    MemoryAssignmentGate, MemoryAvailability, MemoryPresence, RedisAssignmentGate,
    RedisAvailability, RedisPresence,
};
use crate::recovery::{EmbeddedRecovery, Recovery, RecoveryBackend, RedisRecovery};
use crate::state::{AppState, Backends};
use crate::store::{EmbeddedStore, MongoSettings, MongoStore, Store};

/// The graceful drain: turn `/readyz` 503 and refuse new sockets, wait `DRAIN_DELAY_SECS`
/// so load balancers notice, withdraw our presence (announcing users left offline while the
/// adapter can still reach other nodes), close our sockets' connections so clients reconnect
/// elsewhere, then let in-flight events finish. Every step is bounded so that the drain ends
/// within `grace`.
async fn drain(state: &AppState, grace: Duration) {
    let deadline = drain_deadline(grace);
    state.start_draining();
    tracing::info!(node = %state.node_id, "draining");
    tokio::time::sleep(state.config.drain_delay.min(grace / 2)).await;
    let withdraw = async {
        match state.presence.withdraw_node().await {
            Ok(users) => {
                // Through the grace: most of them reconnect to another node meanwhile. Their
                // `offline` is due in presence, so another node (or this one, restarted on the
                // same DATA_DIR) announces it if this one is gone by then.
                if !users.is_empty() {
                    state.offline_after_grace().await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not withdraw presence"),
        }
    };
    if tokio::time::timeout_at(deadline, withdraw).await.is_err() {
        tracing::warn!(node = %state.node_id, "grace period over before presence was withdrawn");
    }
    // Another node assigns chats from now on, without waiting for the gate's lease to lapse.
    state.release_assignment_gate(deadline).await;
    // Another node sends the webhooks from now on, without waiting for the lease to lapse.
    if let Some(webhooks) = state.webhooks.running() {
        let _ = tokio::time::timeout_at(deadline, webhooks.lease.release()).await;
    }
    // Close the connections a few hundred at a time: each client sees its transport close
    // and reconnects (through the load balancer, to a ready node) without a stampede.
    // Whatever is left (long-polling sessions between requests) is closed at once after.
    let close = async {
        state
            .connections
            .close_paced(DRAIN_BATCH, DRAIN_PAUSE)
            .await;
        state.sockets.close_all().await;
    };
    if tokio::time::timeout_at(deadline, close).await.is_err() {
        tracing::warn!(node = %state.node_id, "grace period over before every socket was closed");
    }
    // Webhook events published here are in the outbox before the node stops.
    while (state.events_in_flight() > 0
        || state.fanout.unconfirmed() > 0
        || state.webhooks.unwritten() > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(node = %state.node_id, in_flight = state.events_in_flight(), "drained");
}

/// Connections closed per batch during a drain, and the pause between batches.
const DRAIN_BATCH: usize = 200;
const DRAIN_PAUSE: Duration = Duration::from_millis(100);

/// When a drain that starts now must be over: the grace period less a margin for the process
/// to exit, so that it exits within `SHUTDOWN_GRACE_SECS` of the signal.
fn drain_deadline(grace: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + grace.saturating_sub(Duration::from_millis(500))
}

/// A task that lives as long as the node runs (the cluster supervisor).
type Background = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Wraps the router in the Socket.IO layer of whichever adapter was chosen.
fn with_layer<A: Adapter>(
    layer: socketioxide::layer::SocketIoLayer<A>,
) -> Box<dyn FnOnce(Router) -> Router + Send> {
    Box::new(move |router: Router| router.layer(layer))
}

/// A bound, ready-to-run node.
pub struct Application {
    listener: TrackedListener,
    /// `METRICS_PORT`'s listener, tracked apart from the main one (a drain does not close it).
    metrics_listener: Option<TrackedListener>,
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
        let webhook_endpoints =
            crate::webhooks::settings::endpoints(&config.webhooks).map_err(anyhow::Error::msg)?;
        let mut webhook_lease = crate::webhooks::Lease::Always;
        let store: Arc<dyn Store> = match &config.mongodb_uri {
            // Never connects here: a node whose MongoDB is down still starts, not ready.
            Some(uri) => Arc::new(
                MongoStore::connect(MongoSettings {
                    uri: uri.to_string(),
                    database: config.mongodb_database.clone(),
                    timeout: config.mongodb_timeout,
                    message_retention: config
                        .message_retention_days
                        .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
                })
                .await?,
            ),
            None => Arc::new(EmbeddedStore::open(&config.data_dir)?),
        };
        let window = config.recovery_window;
        let recovery = |backend: Arc<dyn RecoveryBackend>| {
            (!window.is_zero()).then(|| {
                Arc::new(Recovery::new(backend, window).with_budgets(
                    config.recovery_log_max_bytes,
                    config.recovery_tail_max_bytes,
                ))
            })
        };
        let (state, add_socket_layer, mut background) = match config
            .redis_url
            .as_deref()
            .map(str::to_owned)
        {
            None => {
                let recovery = recovery(Arc::new(EmbeddedRecovery::open(&config.data_dir)?));
                // The due `offline` announcements a drain of this node left on its DATA_DIR.
                let presence = Arc::new(
                    MemoryPresence::new()
                        .with_offline_grace(config.offline_grace)
                        .kept_in(&config.data_dir),
                );
                let (layer, io) = socket_io_builder(&config).build_layer();
                let availability = Arc::new(MemoryAvailability::default());
                let state = AppState::new(Backends {
                    config,
                    node_id,
                    store,
                    keys,
                    presence: presence.clone(),
                    assignment_gate: Arc::new(MemoryAssignmentGate::new(availability.clone())),
                    availability,
                    fanout: Arc::new(io.clone()),
                    sockets: Arc::new(io.clone()),
                    recovery,
                });
                crate::realtime::register(&io, state.clone());
                let (announcer, due) = (state.clone(), presence.due_times());
                let restored: Background =
                    Box::pin(async move { announcer.announce_restored_offline(due).await });
                (state, with_layer(layer), vec![restored])
            }
            Some(url) => {
                let redis = cluster::redis::connect(&url).await?;
                webhook_lease = crate::webhooks::Lease::redis(
                    redis.presence.clone(),
                    node_id.clone(),
                    config.webhooks.lease(),
                );
                let (layer, io) = socket_io_builder(&config)
                    .with_adapter::<ClusterAdapter>(redis.adapter)
                    .build_layer();
                let fanout = Arc::new(RedisFanout::new(io.clone(), &node_id));
                let ttl = config.presence_ttl;
                let redis_recovery = Arc::new(RedisRecovery::new(redis.presence.clone()));
                let availability = Arc::new(RedisAvailability::new(redis.presence.clone()));
                let assignment_gate = Arc::new(RedisAssignmentGate::new(
                    redis.presence.clone(),
                    node_id.clone(),
                ));
                let presence = Arc::new(
                    RedisPresence::new(redis.presence, node_id.clone(), ttl)
                        .with_offline_grace(config.offline_grace),
                );
                // Before the first socket: otherwise the first calls each meet `NOSCRIPT`.
                if let Err(e) = presence.load_scripts().await {
                    tracing::warn!(error = %e, "could not load the presence scripts (they load on first use)");
                }
                if let Err(e) = redis_recovery.load_scripts().await {
                    tracing::warn!(error = %e, "could not load the recovery scripts (they load on first use)");
                }
                if let Err(e) = availability.load_scripts().await {
                    tracing::warn!(error = %e, "could not load the availability scripts (they load on first use)");
                }
                if let Err(e) = assignment_gate.load_scripts().await {
                    tracing::warn!(error = %e, "could not load the assignment scripts (they load on first use)");
                }
                let recovery = recovery(redis_recovery);
                let state = AppState::new(Backends {
                    config,
                    node_id,
                    store,
                    keys,
                    presence,
                    availability,
                    assignment_gate,
                    fanout: fanout.clone(),
                    sockets: Arc::new(io.clone()),
                    recovery,
                });
                fanout.count_late_failures(state.metrics.fanout_failures.clone());
                crate::realtime::register(&io, state.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("the Redis adapter could not subscribe: {e}"))?;
                let supervisor: Background = Box::pin(fanout.supervise(redis.subscriber, ttl));
                (state, with_layer(layer), vec![supervisor])
            }
        };

        if !webhook_endpoints.is_empty() {
            let outbox = crate::webhooks::open_outbox(&state.config).await?;
            background.extend(crate::webhooks::start(
                &state.webhooks,
                crate::webhooks::Parts {
                    settings: state.config.webhooks.clone(),
                    endpoints: webhook_endpoints,
                    outbox,
                    lease: Arc::new(webhook_lease),
                    store: state.store.clone(),
                    presence: state.presence.clone(),
                    metrics: state.metrics.webhooks.clone(),
                },
            ));
        }

        // Where upload bodies are received (each file unlinked at once, so anything here is
        // left over from a crash on a platform that cannot unlink open files).
        let incoming = crate::http::uploads::incoming_dir(&state.config.data_dir);
        crate::private_files::ensure_dir(&incoming)?;
        if let Ok(entries) = std::fs::read_dir(&incoming) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // One probe before serving, so `/readyz` is right from the first request.
        crate::http::health::probe_dependencies(&state).await;
        let listener = state
            .connections
            .listener(TcpListener::bind(state.config.listen_addr()?).await?);
        // On loopback unless `METRICS_HOST` says otherwise: metrics reveal load and node names,
        // and a `HOST=0.0.0.0` meant for clients must not publish them too.
        let metrics_listener = match state.config.metrics_port {
            Some(port) => {
                let ip: std::net::IpAddr = state
                    .config
                    .metrics_host
                    .parse()
                    .map_err(|_| anyhow::anyhow!("METRICS_HOST must be an IP address"))?;
                let bound = TcpListener::bind((ip, port)).await?;
                Some(crate::connections::TcpConnections::default().listener(bound))
            }
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
            // Outside the slimming: a refused handshake costs no copy (see `http/admission.rs`).
            .layer(axum::middleware::from_fn_with_state(
                crate::http::admission::Admission::new(state.clone()),
                crate::http::admission::admit,
            ))
            // Before the slimming, which drops the `Origin` header.
            .layer(axum::middleware::from_fn({
                let allowed = AllowedOrigins::parse(&state.config.cors_origins);
                let console = state.config.environment == crate::config::Environment::Development;
                move |req, next| crate::http::origin::check(allowed.clone(), console, req, next)
            }))
            .layer(cors(&state.config.cors_origins));
        // Every socket is a file: the soft limit bounds the sockets this node can hold.
        let open_files_limit = crate::file_limit::raise().map_or(0, |(soft, _hard)| soft);
        state
            .metrics
            .open_files_limit
            .set(i64::try_from(open_files_limit).unwrap_or(i64::MAX));
        tracing::info!(
            node = %state.node_id,
            addr = %listener.local_addr()?,
            open_files_limit,
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
        tasks.spawn(crate::realtime::handshake::close_expired(state.clone()));
        tasks.spawn(heartbeat(state.clone()));
        tasks.spawn(recovery_log_stats(state.clone()));
        tasks.spawn(trim_recovery_log(state.clone()));
        tasks.spawn(crate::service::desk::audit::trim_audit_log(state.clone()));
        tasks.spawn(crate::http::health::watch_dependencies(state.clone()));
        if state.config.assignment.is_auto() {
            tasks.spawn(crate::service::desk::assignment::run_assigner(
                state.clone(),
            ));
        }
        for task in self.background {
            tasks.spawn(task);
        }
        let limits = crate::serve::Limits::from_config(&state.config);
        if let Some(l) = self.metrics_listener {
            // The same serving path as the main port, so the same header and request
            // deadlines; it runs until the node's tasks are aborted.
            let router = metrics_router(state.clone());
            tasks.spawn(crate::serve::serve(
                l,
                router,
                limits,
                std::future::pending(),
            ));
        }
        let grace = state.config.shutdown_grace;
        let drain_state = state.clone();
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
        let stop = async move {
            shutdown.await;
            let deadline = drain_deadline(grace);
            drain(&drain_state, grace).await;
            let _ = drained_tx.send(deadline);
        };
        // Turned into routes once here: served as a bare `Router`, axum clones the whole route
        // table (one allocation per route) for every accepted connection, ~74k instructions a
        // handshake in a callgrind profile.
        let router = self.router.with_state(());
        // Not `axum::serve`: it has no header-read timeout (see `serve.rs`).
        let server = crate::serve::serve(self.listener, router, limits, stop);
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
        tokio::select! {
            () = &mut server => {}
            () = cut_off => {}
        }
        tasks.abort_all();
        Ok(())
    }
}

/// Keeps the recovery log's size and trim lag current in the metrics (two cheap reads every
/// 15 s: `XLEN` and the first entry, or one SQLite count).
async fn recovery_log_stats(state: AppState) {
    let Some(recovery) = state.recovery.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match recovery.stats().await {
            Ok(stats) => {
                let m = &state.metrics.recovery;
                m.log_entries.set(stats.entries as i64);
                let age_ms = stats
                    .oldest_ms
                    .map_or(0, |o| crate::recovery::now_ms().saturating_sub(o));
                let lag = age_ms.saturating_sub(recovery.window().as_millis() as u64);
                m.trim_lag.set(lag as f64 / 1000.0);
            }
            Err(e) => tracing::debug!(error = %e, "recovery log stats unavailable"),
        }
    }
}

/// Keeps the recovery log and this node's tail within their byte budgets and the log within
/// its window: one trim a second (a script in Redis, or one `DELETE` of the SQLite log), so a
/// burst of big messages is trimmed within a second of passing the budget (issue 25, item 7).
async fn trim_recovery_log(state: AppState) {
    let Some(recovery) = state.recovery.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match recovery.trim().await {
            Ok((log, tail)) => {
                let m = &state.metrics.recovery;
                m.log_bytes.set(i64::try_from(log).unwrap_or(i64::MAX));
                m.tail_bytes.set(i64::try_from(tail).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::debug!(error = %e, "recovery log trim failed"),
        }
    }
}

/// The renewal loop: one per node, every `HEARTBEAT_INTERVAL_SECS`; announces the transitions
/// presence reports (users whose node died, sockets written back after an outage).
async fn heartbeat(state: AppState) {
    let mut tick = tokio::time::interval(state.config.heartbeat_interval);
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
                state.readiness.adapter.note_answer();
                let offline = changes.iter().filter(|c| !c.online).count();
                state.metrics.presence_reaped_users.inc_by(offline as u64);
                for change in changes.iter().filter(|c| c.online) {
                    state
                        .announce_status(&change.user_id, true, Turn::unordered())
                        .await;
                }
                // A dead node's users: offline after the grace, unless they came back.
                if offline > 0 {
                    state.offline_after_grace().await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence heartbeat failed"),
        }
        // Whatever is due and unclaimed: left by a node that drained or died before its grace
        // ended (or by this one, before a restart).
        state.announce_due_offline().await;
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
fn socket_io_builder(config: &Config) -> socketioxide::SocketIoBuilder {
    SocketIo::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        // Bytes a connection may have waiting; past them it is closed (the packet count bound
        // below lets a few large replies, such as `chat:sync` pages, hold any amount for a
        // client that POSTs requests and never reads: docs/security.md).
        .max_buffer_bytes(config.socket_queue_bytes)
        // Each idle WebSocket keeps its read buffer; 256 bytes instead of the default 128 KiB
        // saves memory per connection. It holds a typing indicator, a read receipt or a short
        // chat message; larger frames still arrive, in more reads (the buffer grows as needed).
        .ws_read_buffer_size(256)
        // Packets a connection may have waiting before `emit` refuses more (socketioxide's
        // default is 128). The queue grows only while packets wait, so an idle connection pays
        // nothing for it; a burst to one socket (hundreds of reports at once, a busy room whose
        // writes are being coalesced) must not lose live deliveries.
        .max_buffer_size(1024)
        // One Socket.IO packet is at most 256 KiB on every transport (PROTOCOL.md), refused
        // before more is buffered, authenticated or not. `max_payload` covers long-polling
        // bodies only (413); a WebSocket has its own limits (64 MiB a message and 16 MiB a
        // frame by default): a frame whose header announces more is refused before its payload
        // is read, and a fragmented message as soon as its fragments add up to more; either
        // closes the connection.
        .max_payload(MAX_PACKET_BYTES as u64)
        .ws_max_message_size(MAX_PACKET_BYTES)
        .ws_max_frame_size(MAX_PACKET_BYTES)
}

/// The largest Socket.IO packet a client may send, on any transport.
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

fn cors(origins: &str) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        // A browser frontend must be able to read how long to wait after a `429`.
        .expose_headers([header::RETRY_AFTER]);
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
