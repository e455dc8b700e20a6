//! `GET /api/audit`: the audit log of staff actions, newest first, for superadmins (the use
//! case in `service/desk/audit.rs` authorizes). Every parameter is checked here before the
//! store is asked: a malformed one is `400 VALIDATION` naming it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Params;
use crate::domain::{AuditAction, AuditEntry, AuditQuery, AuthUser, parse_plain_id};
use crate::error::AppError;
use crate::paging::{self, decode_cursor};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// `{ entries, nextCursor }`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditList {
    entries: Vec<AuditEntry>,
    /// The `cursor` of the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// The audit log of staff actions, newest first (superadmin only).
#[utoipa::path(
    get,
    path = "/api/audit",
    operation_id = "auditLog",
    tag = "desk",
    params(
        ("actor" = Option<String>, Query, max_length = 64, description = "Only this actor's actions (a user id, or `system`)"),
        ("target" = Option<String>, Query, max_length = 64, description = "Only actions on this chat or user id"),
        ("action" = Option<AuditAction>, Query, description = "Only this action"),
        ("limit" = Option<super::openapi::PageLimit>, Query, description = "Page size (default 50, at most 200)"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of the audit log", body = AuditList)),
)]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<AuditList>, AppError> {
    let id = |name: &str| {
        params
            .get(name)
            .map(|v| parse_plain_id(name, v))
            .transpose()
    };
    let query = AuditQuery {
        actor: id("actor")?,
        target: id("target")?,
        action: params.get("action").map(AuditAction::parse).transpose()?,
        after: params.get("cursor").map(decode_cursor).transpose()?,
        limit: params.limit(paging::AUDIT)?,
    };
    let page = state.audit().page(&user, query).await?;
    Ok(Json(AuditList {
        entries: page.entries,
        next_cursor: page.next,
    }))
}
