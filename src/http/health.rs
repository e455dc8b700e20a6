//! `/healthz` (alive) and `/readyz` (store and adapter reachable, not draining), and the
//! per-node dependency check behind `switchboard_dependency_up`.
//!
//! `/readyz` is what load balancers and Kubernetes route by; `dependency_up` is what alerts
//! use, so it is refreshed by [`watch_dependencies`] even when nobody probes `/readyz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::Dependency;
use crate::state::AppState;

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    draining: bool,
    store: &'static str,
    adapter: &'static str,
    node: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (store, adapter) = check_dependencies(&state).await;
    let draining = state.is_draining();
    let ready = store && adapter && !draining;
    let word = |ok| if ok { "ok" } else { "unreachable" };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            draining,
            store: word(store),
            adapter: word(adapter),
            node: state.node_id.clone(),
        }),
    )
}

/// Pings the store and the adapter (each within its own timeout) and records the result.
async fn check_dependencies(state: &AppState) -> (bool, bool) {
    let (store, adapter) = tokio::join!(state.store_reachable(), state.adapter_reachable());
    state.metrics.dependency(Dependency::Store, store);
    state.metrics.dependency(Dependency::Adapter, adapter);
    (store, adapter)
}

/// One loop per node: refreshes `switchboard_dependency_up` every `interval`, so an alert
/// fires on an unreachable store or Redis whether or not anything probes `/readyz`.
pub async fn watch_dependencies(state: AppState, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (true, true);
    loop {
        tick.tick().await;
        let now = check_dependencies(&state).await;
        // Log changes only: an outage of minutes is one line, not one per tick.
        if now != last {
            let (store, adapter) = now;
            if store && adapter {
                tracing::info!(node = %state.node_id, "store and adapter reachable again");
            } else {
                tracing::warn!(node = %state.node_id, store, adapter, "a dependency is unreachable");
            }
            last = now;
        }
    }
}
