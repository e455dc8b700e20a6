//! `/api/reports`: send, list, mark read, count unread. Each handler parses its request and
//! calls the use case in `service/reports.rs`, which authorizes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{JsonBody, Params, PathId};
use crate::domain::{AuthUser, Report, ReportCursor, ReportId, ReportInput};
use crate::error::AppError;
use crate::ordering::Turn;
use crate::paging::{self, decode_cursor, encode_cursor};
use crate::service::ReportReadReply;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(unread_count))
        .routes(routes!(read))
}

/// Send a report to a user (staff only); it is delivered live too.
#[utoipa::path(
    post,
    path = "/api/reports",
    operation_id = "sendReport",
    tag = "reports",
    request_body = ReportInput,
    responses((status = 201, description = "The saved report", body = Report, links(
        ("ReadReport" = (operation_id = "readReport", parameters(("report_id" = "$response.body#/id")))),
    ))),
)]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<ReportInput>,
) -> Result<(StatusCode, Json<Report>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .reports()
                .send_report(&user, body, Turn::unordered())
                .await?,
        ),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReportList {
    reports: Vec<Report>,
    next_cursor: Option<String>,
}

/// List reports, newest first: a user's own (another `userId` is `403`), any user's for staff.
#[utoipa::path(
    get,
    path = "/api/reports",
    operation_id = "listReports",
    tag = "reports",
    params(
        ("userId" = Option<String>, Query, max_length = 64, description = "Whose reports (a user may name only themself)"),
        ("unread" = Option<bool>, Query, description = "Only unread reports"),
        ("limit" = Option<super::openapi::PageLimit>, Query, description = "Page size (default 20, at most 100)"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of reports", body = ReportList)),
)]
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
        .reports()
        .list_reports(&user, params.get("userId"), unread_only, after, limit)
        .await?;
    Ok(Json(ReportList {
        reports,
        next_cursor: next.map(|c| encode_cursor(c.created_at, c.id.as_str())),
    }))
}

/// Mark a report read (its recipient only); emits `report:read`.
#[utoipa::path(
    post,
    path = "/api/reports/{report_id}/read",
    operation_id = "readReport",
    tag = "reports",
    params(("report_id" = ReportId, Path, description = "The report")),
    responses((status = 200, description = "When it was read", body = ReportReadReply)),
)]
async fn read(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<ReportReadReply>, AppError> {
    let id = ReportId::parse(&id)?;
    Ok(Json(
        state
            .reports()
            .read_report(&user, &id, Turn::unordered())
            .await?
            .into(),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Count {
    count: u64,
}

/// How many of the caller's reports are unread.
#[utoipa::path(
    get,
    path = "/api/reports/unread-count",
    operation_id = "unreadReportCount",
    tag = "reports",
    responses((status = 200, description = "The count", body = Count)),
)]
async fn unread_count(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Count>, AppError> {
    let count = state.reports().unread_report_count(&user).await?;
    Ok(Json(Count { count }))
}
