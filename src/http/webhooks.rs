//! `/api/webhooks`: the operator's failed-delivery list and re-send (superadmin only; the use
//! cases in `service/webhooks.rs` authorize).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::{JsonBody, Params};
use crate::domain::AuthUser;
use crate::error::AppError;
use crate::paging;
use crate::service::webhooks::{FailedWebhook, Resend};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks/failed", get(failed))
        .route("/api/webhooks/resend", post(resend))
}

#[derive(Serialize)]
struct FailedList {
    failed: Vec<FailedWebhook>,
}

async fn failed(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<FailedList>, AppError> {
    let limit = params.limit(paging::LISTS)?;
    let failed = state
        .failed_webhooks(&user, params.get("endpoint"), limit)
        .await?;
    Ok(Json(FailedList { failed }))
}

async fn resend(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<Resend>,
) -> Result<Json<serde_json::Value>, AppError> {
    let resent = state.resend_webhooks(&user, body).await?;
    Ok(Json(json!({ "resent": resent })))
}
