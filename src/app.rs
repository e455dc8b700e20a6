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
use socketioxide::adapter::Adapter;
use tokio::net::TcpListener;

mod drain;
mod layers;
mod tasks;

pub use layers::MAX_PACKET_BYTES;

use drain::{drain, drain_deadline};
use layers::{cors, metrics_router, socket_io_builder};
use tasks::{heartbeat, recovery_log_stats, trim_recovery_log};

use crate::auth::Keys;
use crate::cluster;
use crate::cluster::redis::{ClusterAdapter, RedisFanout};
use crate::config::Config;
use crate::connections::TrackedListener;
use crate::http::origin::AllowedOrigins;
use crate::presence::{
    MemoryAssignmentGate, MemoryAvailability, MemoryPresence, RedisAssignmentGate,
    RedisAvailability, RedisPresence,
};
use crate::recovery::{EmbeddedRecovery, Recovery, RecoveryBackend, RedisRecovery, SeenOffsets};
use crate::state::{AppState, Backends};
use crate::store::{EmbeddedStore, MongoSettings, MongoStore, Store};

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
                    Box::pin(
                        async move { announcer.statuses().announce_restored_offline(due).await },
                    );
                (state, with_layer(layer), vec![restored])
            }
            Some(url) => {
                let redis = cluster::redis::connect(&url, config.redis_subscriber_buffer).await?;
                webhook_lease = crate::webhooks::Lease::redis(
                    redis.presence.clone(),
                    node_id.clone(),
                    config.webhooks.lease(),
                );
                // The outage replay broadcasts an event again under its offset: a node delivers
                // each offset once (`recovery/seen.rs`).
                let seen = SeenOffsets::new(config.recovery_window);
                let (layer, io) = socket_io_builder(&config)
                    .admit_broadcasts(move |data| seen.admit(data))
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
                redis.gaps.on_gap({
                    let (sockets, gaps) =
                        (state.sockets.clone(), state.metrics.subscriber_gaps.clone());
                    move || {
                        gaps.inc();
                        sockets.close_transports();
                    }
                });
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
