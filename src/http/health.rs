//! `/healthz` (alive) and `/readyz` (store and adapter reachable, not draining).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::AppState;

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
    let (store, adapter) = tokio::join!(state.store_reachable(), state.adapter_reachable());
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
