//! The support desk's REST endpoints: removing a user (`POST /api/users/{id}/disconnect`,
//! `DELETE /api/users/{id}/block`, `POST /api/users/{id}/revoke-tokens`), and the gate that
//! refuses a removed caller's every REST call ([`removal_gate`]). Who may act is decided in
//! `service/desk/removals.rs`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{JsonBody, PathId};
use crate::domain::{AuthUser, DisconnectInput, DisconnectRequest};
use crate::error::AppError;
use crate::service::desk::availability::SupportAnswer;
use crate::service::desk::{Disconnected, Revoked};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/users/{user_id}/disconnect", post(disconnect))
        .route("/api/users/{user_id}/block", delete(unblock))
        .route("/api/users/{user_id}/revoke-tokens", post(revoke_tokens))
        .route("/api/support/availability", get(support_availability))
}

/// `GET /api/support/availability`: any authenticated caller; a yes/no and a count.
async fn support_availability(
    State(state): State<AppState>,
    _user: AuthUser,
) -> Result<Json<SupportAnswer>, AppError> {
    Ok(Json(state.support_availability().await?))
}

async fn disconnect(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    JsonBody(input): JsonBody<DisconnectInput>,
) -> Result<Json<Disconnected>, AppError> {
    let request = DisconnectRequest::parse(input)?;
    Ok(Json(state.disconnect_user(&user, &id, request).await?))
}

async fn unblock(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Value>, AppError> {
    let user_id = state.unblock_user(&user, &id).await?;
    Ok(Json(json!({ "userId": user_id, "blockedUntil": null })))
}

async fn revoke_tokens(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Revoked>, AppError> {
    Ok(Json(state.revoke_tokens(&user, &id).await?))
}

/// Refuses every REST call of a blocked user (`403 FORBIDDEN`) or with a revoked token (`401
/// UNAUTHORIZED`), before its handler runs. A request without a valid token passes on, to be
/// refused by its handler; one without a token costs nothing here.
pub async fn removal_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let verified =
        crate::auth::bearer(req.headers()).and_then(|t| state.keys.verifier.verify_token(t).ok());
    if let Some(v) = verified
        && let Err(refused) = state.check_removal(&v.user, v.issued_at).await
    {
        return refused.into_response();
    }
    next.run(req).await
}
