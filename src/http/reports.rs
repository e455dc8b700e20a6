//! `/api/reports`: send, list, mark read, count unread.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::{JsonBody, Params, PathId, decode_cursor, encode_cursor};
use crate::app::AppState;
use crate::domain::{AuthUser, Report, ReportCursor, ReportId, ReportInput, ReportQuery};
use crate::error::AppError;
use crate::service::ReportReadReply;
use crate::store::StoreOp;

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
        Json(state.send_report(&user, body).await?),
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
    let limit = params.limit(20, 100)?;
    let user_id = match params.get("userId") {
        Some(id) if !user.is_staff() && id != user.id => {
            return Err(AppError::forbidden("users read their own reports only"));
        }
        Some(id) => Some(id.to_owned()),
        None if user.is_staff() => None,
        None => Some(user.id.clone()),
    };
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
    let query = ReportQuery {
        user_id,
        unread_only,
        limit: limit + 1,
        after,
    };
    let mut reports = state
        .timed(StoreOp::ListReports, state.store.list_reports(&query))
        .await?;
    let next_cursor = if reports.len() > limit {
        reports.truncate(limit);
        reports
            .last()
            .map(|r| encode_cursor(r.created_at, r.id.as_str()))
    } else {
        None
    };
    Ok(Json(ReportList {
        reports,
        next_cursor,
    }))
}

async fn read(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<ReportReadReply>, AppError> {
    let id = ReportId::parse(&id)?;
    Ok(Json(state.read_report(&user, &id).await?.into()))
}

#[derive(Serialize)]
struct Count {
    count: u64,
}

async fn unread_count(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Count>, AppError> {
    let count = state
        .timed(
            StoreOp::UnreadReportCount,
            state.store.unread_report_count(&user.id),
        )
        .await?;
    Ok(Json(Count { count }))
}
