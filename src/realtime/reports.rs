//! `sendReportMessage` and `report:read`.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::domain::{Report, ReportId, ReportInput};
use crate::error::{AppError, ErrorBody};
use crate::service::ReportReadReply;

/// The body of `reportMessageSent` (and of the `sendReportMessage` ack).
#[derive(Serialize)]
pub struct SentBody<'a, R> {
    ok: bool,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

impl<R> SentBody<'_, R> {
    pub fn ok(report: R) -> Self {
        Self {
            ok: true,
            success: true,
            message: Some(report),
            error: None,
        }
    }
}

impl<'a> SentBody<'a, ()> {
    pub fn failed(e: &'a AppError) -> Self {
        Self {
            ok: false,
            success: false,
            message: None,
            error: Some(e.body()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPayload {
    report_id: String,
}

/// `sendReportMessage`: staff send a report (answered by `reportMessageSent`).
pub async fn send(ctx: Ctx, p: ReportInput) -> Result<Report, AppError> {
    ctx.state.send_report(&ctx.session.user, p).await
}

/// `report:read`: the recipient marks a report read.
pub async fn read(ctx: Ctx, p: ReadPayload) -> Result<ReportReadReply, AppError> {
    let id = ReportId::parse(&p.report_id)?;
    let report = ctx.state.read_report(&ctx.session.user, &id).await?;
    Ok(ReportReadReply::from(report))
}
