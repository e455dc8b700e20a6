//! `/api/webhooks`: the operator's failed-delivery list and re-send (superadmin only; the use
//! cases in `service/webhooks.rs` authorize).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{JsonBody, Params};
use crate::domain::AuthUser;
use crate::error::AppError;
use crate::paging;
use crate::service::webhooks::{FailedWebhook, Resend};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(failed))
        .routes(routes!(resend))
}

#[derive(Serialize, utoipa::ToSchema)]
struct FailedList {
    failed: Vec<FailedWebhook>,
}

/// `{ resent }`: how many failed deliveries were queued again.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: written with `json!`.
struct Resent {
    resent: u64,
}

/// The deliveries kept as failed (superadmin only).
#[utoipa::path(
    get,
    path = "/api/webhooks/failed",
    operation_id = "failedWebhooks",
    tag = "webhooks",
    params(
        ("endpoint" = Option<String>, Query, description = "Only this endpoint's"),
        ("limit" = Option<super::openapi::PageLimit>, Query, description = "Page size (default 20, at most 100)"),
    ),
    responses((status = 200, description = "Failed deliveries", body = FailedList)),
)]
async fn failed(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<FailedList>, AppError> {
    let limit = params.limit(paging::LISTS)?;
    let failed = state
        .webhook_admin()
        .failed_webhooks(&user, params.get("endpoint"), limit)
        .await?;
    Ok(Json(FailedList { failed }))
}

/// Send failed deliveries again (superadmin only).
#[utoipa::path(
    post,
    path = "/api/webhooks/resend",
    operation_id = "resendWebhooks",
    tag = "webhooks",
    request_body = Option<Resend>,
    responses((status = 200, description = "How many were queued again", body = Resent)),
)]
async fn resend(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<Resend>,
) -> Result<Json<serde_json::Value>, AppError> {
    let resent = state.webhook_admin().resend_webhooks(&user, body).await?;
    Ok(Json(json!({ "resent": resent })))
}
