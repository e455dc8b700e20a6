//! `/api/reports`: send, list, mark read, count unread. Each handler parses its request and
//! calls the use case in `service/reports.rs`, which authorizes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::{JsonBody, Params, PathId};
use crate::domain::{AuthUser, Report, ReportCursor, ReportId, ReportInput};
use crate::error::AppError;
use crate::ordering::Turn;
use crate::paging::{self, decode_cursor, encode_cursor};
use crate::service::ReportReadReply;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/reports", get(list).post(create))
        .route("/api/reports/unread-count", get(unread_count))
        .route("/api/reports/{report_id}/read", post(read))
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<ReportInput>,
) -> Result<(StatusCode, Json<Report>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(state.send_report(&user, body, Turn::unordered()).await?),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportList {
    reports: Vec<Report>,
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<ReportList>, AppError> {
    let limit = params.limit(paging::LISTS)?;
    let unread_only = match params.get("unread") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(AppError::validation("unread must be true or false")),
    };
    let after = params
        .get("cursor")
        .map(decode_cursor)
        .transpose()?
        .map(|(created_at, id)| ReportCursor {
            created_at,
            id: ReportId::from_trusted(id),
        });
    let (reports, next) = state
        .list_reports(&user, params.get("userId"), unread_only, after, limit)
        .await?;
    Ok(Json(ReportList {
        reports,
        next_cursor: next.map(|c| encode_cursor(c.created_at, c.id.as_str())),
    }))
}

async fn read(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<ReportReadReply>, AppError> {
    let id = ReportId::parse(&id)?;
    Ok(Json(
        state
            .read_report(&user, &id, Turn::unordered())
            .await?
            .into(),
    ))
}

#[derive(Serialize)]
struct Count {
    count: u64,
}

async fn unread_count(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Count>, AppError> {
    let count = state.unread_report_count(&user).await?;
    Ok(Json(Count { count }))
}
