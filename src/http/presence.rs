//! `GET /api/socket/active-users` and `GET /api/users/{userId}/status`, answered from the
//! cluster-wide presence, so every node gives the same answer. Who may ask is decided in
//! `service/presence.rs`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{Params, PathId};
use crate::domain::{AuthUser, Timestamp, rfc3339_opt};
use crate::error::AppError;
use crate::paging;
use crate::presence::SocketEntry;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/socket/active-users", get(active_users))
        .route("/api/users/{user_id}/status", get(status))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActiveUsers {
    active_users: Vec<SocketEntry>,
    count: u64,
    users: u64,
    next_cursor: Option<String>,
}

async fn active_users(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<ActiveUsers>, AppError> {
    let page = state
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    user_id: String,
    status: &'static str,
    sockets: u64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    last_seen: Option<Timestamp>,
    /// A staff member's support desk availability (`available`, `away`); absent for users
    /// and for staff with no presence (`offline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<&'static str>,
}

async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Status>, AppError> {
    let p = state.user_presence(&user, &id).await?;
    // During the offline grace the user is still online (with no socket), as the events say.
    let online = p.sockets > 0 || state.in_offline_grace(&p);
    let status = if online { "online" } else { "offline" };
    let availability = state.staff_status(&id).await.map(|s| s.as_str());
    Ok(Json(Status {
        user_id: id,
        status,
        sockets: p.sockets,
        last_seen: p.last_seen,
        availability,
    }))
}
