//! `GET /api/socket/active-users` and `GET /api/users/{userId}/status`, answered from the
//! cluster-wide presence, so every node gives the same answer. Who may ask is decided in
//! `service/presence.rs`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Params, PathId};
use crate::domain::{AuthUser, Timestamp, rfc3339_opt};
use crate::error::AppError;
use crate::paging;
use crate::presence::SocketEntry;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(active_users))
        .routes(routes!(status))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ActiveUsers {
    active_users: Vec<SocketEntry>,
    count: u64,
    users: u64,
    next_cursor: Option<String>,
}

/// Every socket in the cluster, one entry each (staff only).
#[utoipa::path(
    get,
    path = "/api/socket/active-users",
    operation_id = "activeUsers",
    tag = "presence",
    params(
        ("limit" = Option<super::openapi::PageLimit>, Query, description = "Page size (default 100, at most 1000)"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of sockets", body = ActiveUsers)),
)]
async fn active_users(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<ActiveUsers>, AppError> {
    let page = state
        .statuses()
        .active_sockets(&user, params.get("cursor"), || {
            params.limit(paging::ACTIVE_USERS)
        })
        .await?;
    Ok(Json(ActiveUsers {
        active_users: page.entries,
        count: page.sockets,
        users: page.users,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Status {
    user_id: String,
    /// `online` during the offline grace too (with `sockets: 0`).
    #[schema(value_type = String, pattern = "^(online|offline)$")]
    status: &'static str,
    sockets: u64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_seen: Option<Timestamp>,
    /// A staff member's support desk availability (`available`, `away`); absent for users
    /// and for staff with no presence (`offline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    availability: Option<&'static str>,
}

/// A user's presence, cluster-wide (staff, or the user themself).
#[utoipa::path(
    get,
    path = "/api/users/{user_id}/status",
    operation_id = "userStatus",
    tag = "presence",
    params(("user_id" = String, Path, max_length = 64, description = "The user")),
    responses((status = 200, description = "The user's presence", body = Status)),
)]
async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Status>, AppError> {
    let p = state.statuses().user_presence(&user, &id).await?;
    // During the offline grace the user is still online (with no socket), as the events say.
    let online = p.sockets > 0 || state.statuses().in_offline_grace(&p);
    let status = if online { "online" } else { "offline" };
    let availability = state.support().staff_status(&id).await.map(|s| s.as_str());
    Ok(Json(Status {
        user_id: id,
        status,
        sockets: p.sockets,
        last_seen: p.last_seen,
        availability,
    }))
}
