//! `/healthz` (alive) and `/readyz` (store and adapter reachable, not draining), and the
//! per-node watcher behind both `/readyz` and `switchboard_dependency_up`.
//!
//! Anyone may ask `/readyz`, so it tells anyone only ready or not (`{ "ready": bool }` with
//! `200`/`503`): the node's name and which dependency is down help an attacker time and aim an
//! attack, and a load balancer needs the status alone. The details (`draining`, `store`,
//! `adapter`, `node`) go to a caller with a staff token (docs/operations.md).
//!
//! `/readyz` is what load balancers and Kubernetes route by, so it answers at once from
//! [`Readiness`], state that [`watch_dependencies`] keeps current by probing the store and
//! Redis every [`PROBE_INTERVAL`] (each probe bounded by the same time): an outage is noticed
//! within about a second, and no request ever waits on a dependency.
//!
//! A node that has been ready turns `503` only once a dependency has been unreachable for
//! [`READINESS_GRACE`]: a Redis blip of a second or two (a restart, a Sentinel or cluster
//! failover) must not make every node of the cluster refuse new clients at once, which would
//! leave a load balancer nowhere to send them, while the node keeps serving its own sockets
//! through it (see `docs/cluster.md`). A dependency that has never answered since start-up gets
//! no grace: the node is not ready until it does.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics::Dependency;
use crate::state::AppState;

use crate::state::readiness::Watched;
pub use crate::state::readiness::{PROBE_INTERVAL, READINESS_GRACE};

/// What staff are told; everyone else gets [`ReadinessStatus`].
#[derive(Serialize)]
struct ReadinessBody {
    ready: bool,
    draining: bool,
    store: &'static str,
    adapter: &'static str,
    node: String,
}

/// What anyone is told: ready or not, nothing that names the node or its dependencies.
#[derive(Serialize)]
struct ReadinessStatus {
    ready: bool,
}

/// `{ ready }`, or with a staff token `{ ready, draining, store, adapter, node }`
/// (documentation only: [`ReadinessStatus`] and [`ReadinessBody`] are written).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Readiness {
    ready: bool,
    draining: Option<bool>,
    /// `ok`, `unreachable (within grace)` or `unreachable`.
    store: Option<String>,
    /// As `store`.
    adapter: Option<String>,
    /// The `NODE_ID`.
    node: Option<String>,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// `{ "status": "ok" }` while the process is alive.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: written with `json!`.
struct Alive {
    #[schema(value_type = String, pattern = "^ok$")]
    status: (),
}

/// Whether the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "Alive", body = Alive)),
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Whether this node can serve; a staff token also gets the details.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    security((), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Ready (details with a staff token)", body = inline(Readiness)),
        (status = 503, description = "Draining, or a dependency is unreachable past the grace", body = inline(Readiness)),
    ),
)]
async fn readyz(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let now = Instant::now();
    let r = &state.readiness;
    let (store, adapter) = (r.store.usable(now), r.adapter.usable(now));
    let draining = state.drain.is_draining();
    let ready = store && adapter && !draining;
    let word = |w: &Watched| match (w.reachable(), w.usable(now)) {
        (true, _) => "ok",
        (false, true) => "unreachable (within grace)",
        (false, false) => "unreachable",
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // A token is checked only when one is sent (a load balancer sends none): one HMAC, no I/O.
    let staff = crate::auth::bearer(&headers)
        .and_then(|t| state.keys.verifier.verify(t).ok())
        .is_some_and(|u| u.is_staff());
    if !staff {
        return (status, Json(ReadinessStatus { ready })).into_response();
    }
    (
        status,
        Json(ReadinessBody {
            ready,
            draining,
            store: word(&r.store),
            adapter: word(&r.adapter),
            node: state.node_id.clone(),
        }),
    )
        .into_response()
}

/// Probes the store and the adapter once (each within [`PROBE_INTERVAL`]) and records the
/// outcome; returns whether either changed.
pub async fn probe_dependencies(state: &AppState) -> bool {
    let (store, adapter) = tokio::join!(
        async {
            match tokio::time::timeout(PROBE_INTERVAL, state.store.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                // Slow, not unreachable, when the node's own reads and writes are being
                // answered meanwhile (a storm of handshakes or departures queues the probe
                // behind them): it must not take a working node out of a balancer's rotation.
                Err(_) => state.readiness.store.take_answered(),
            }
        },
        async {
            match tokio::time::timeout(PROBE_INTERVAL, state.presence.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                // The same for Redis: a storm's presence and recovery calls queue the probe
                // behind them, and a slow Redis that answers them is not an unreachable one.
                Err(_) => state.readiness.adapter.take_answered(),
            }
        },
    );
    let now = Instant::now();
    // What answered before this probe counts for this probe only.
    state.readiness.store.take_answered();
    state.readiness.adapter.take_answered();
    state.metrics.dependency(Dependency::Store, store);
    state.metrics.dependency(Dependency::Adapter, adapter);
    let a = state.readiness.store.record(store, now);
    let b = state.readiness.adapter.record(adapter, now);
    a || b
}

/// One loop per node: probes the dependencies every [`PROBE_INTERVAL`], keeping [`Readiness`]
/// and `switchboard_dependency_up` current whether or not anything asks.
pub async fn watch_dependencies(state: AppState) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Log changes only: an outage of minutes is one line, not one per probe.
        if probe_dependencies(&state).await {
            let r = &state.readiness;
            let (store, adapter) = (r.store.reachable(), r.adapter.reachable());
            if store && adapter {
                tracing::info!(node = %state.node_id, "store and adapter reachable again");
            } else {
                tracing::warn!(node = %state.node_id, store, adapter, grace_secs = READINESS_GRACE.as_secs(), "a dependency is unreachable");
            }
        }
    }
}
