//! The support desk's REST endpoints: removing a user (`POST /api/users/{id}/disconnect`,
//! `DELETE /api/users/{id}/block`, `POST /api/users/{id}/revoke-tokens`), and the gate that
//! refuses a removed caller's every REST call ([`removal_gate`]). Who may act is decided in
//! `service/desk/removals.rs`.

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{JsonBody, PathId};
use crate::domain::{AuthUser, DisconnectInput, DisconnectRequest};
use crate::error::AppError;
use crate::service::desk::availability::SupportAnswer;
use crate::service::desk::{Disconnected, Revoked};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(disconnect))
        .routes(routes!(unblock))
        .routes(routes!(revoke_tokens))
        .routes(routes!(support_availability))
}

/// `{ userId, blockedUntil: null }` (documentation only: written with `json!`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
struct Unblocked {
    user_id: String,
    #[schema(value_type = Option<String>)]
    blocked_until: (),
}

/// `GET /api/support/availability`: any authenticated caller; a yes/no and a count.
#[utoipa::path(
    get,
    path = "/api/support/availability",
    operation_id = "supportAvailability",
    tag = "desk",
    responses((status = 200, description = "Whether any staff member is available, and how many", body = SupportAnswer)),
)]
async fn support_availability(
    State(state): State<AppState>,
    _user: AuthUser,
) -> Result<Json<SupportAnswer>, AppError> {
    Ok(Json(state.support().support_availability().await?))
}

/// Disconnect every socket of a user in the cluster, and optionally block them (staff; only
/// superadmins act on staff).
#[utoipa::path(
    post,
    path = "/api/users/{user_id}/disconnect",
    operation_id = "disconnectUser",
    tag = "desk",
    params(("user_id" = String, Path, max_length = 64, description = "The user")),
    request_body = Option<DisconnectInput>,
    responses((status = 200, description = "How many sockets were disconnected, and the block", body = Disconnected)),
)]
async fn disconnect(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    JsonBody(input): JsonBody<DisconnectInput>,
) -> Result<Json<Disconnected>, AppError> {
    let request = DisconnectRequest::parse(input)?;
    Ok(Json(
        state
            .removals()
            .disconnect_user(&user, &id, request)
            .await?,
    ))
}

/// End a user's block (staff; only superadmins act on staff).
#[utoipa::path(
    delete,
    path = "/api/users/{user_id}/block",
    operation_id = "unblockUser",
    tag = "desk",
    params(("user_id" = String, Path, max_length = 64, description = "The user")),
    responses((status = 200, description = "The block ended", body = Unblocked)),
)]
async fn unblock(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Value>, AppError> {
    let user_id = state.removals().unblock_user(&user, &id).await?;
    Ok(Json(json!({ "userId": user_id, "blockedUntil": null })))
}

/// Refuse every token of a user issued before now, on every node (staff; only superadmins act
/// on staff).
#[utoipa::path(
    post,
    path = "/api/users/{user_id}/revoke-tokens",
    operation_id = "revokeTokens",
    tag = "desk",
    params(("user_id" = String, Path, max_length = 64, description = "The user")),
    responses((status = 200, description = "Tokens issued before `revokedBefore` are refused", body = Revoked)),
)]
async fn revoke_tokens(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Revoked>, AppError> {
    Ok(Json(state.removals().revoke_tokens(&user, &id).await?))
}

/// Refuses every REST call of a blocked user (`403 FORBIDDEN`) or with a revoked token (`401
/// UNAUTHORIZED`), before its handler runs, and records the caller in the user directory. A request without a valid token passes on, to be
/// refused by its handler; one without a token costs nothing here.
pub async fn removal_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let verified =
        crate::auth::bearer(req.headers()).and_then(|t| state.keys.verifier.verify_token(t).ok());
    if let Some(v) = verified {
        // The caller's role goes to the user directory (the removal rule reads it).
        let removals = state.removals();
        let (checked, ()) = tokio::join!(
            removals.check_removal(&v.user, v.issued_at),
            state.directory.see(&v.user)
        );
        if let Err(refused) = checked {
            return refused.into_response();
        }
    }
    next.run(req).await
}
