//! `sendReportMessage` and `report:read`.

use serde::Deserialize;

use super::Ctx;
use crate::domain::{Report, ReportId, ReportInput};
use crate::error::AppError;
use crate::ordering::Turn;
use crate::service::ReportReadReply;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPayload {
    report_id: String,
}

/// `sendReportMessage`: staff send a report (answered by `reportMessageSent`).
pub async fn send(ctx: Ctx, turn: Turn, p: ReportInput) -> Result<Report, AppError> {
    ctx.state
        .reports()
        .send_report(&ctx.session.user, p, turn)
        .await
}

/// `report:read`: the recipient marks a report read.
pub async fn read(ctx: Ctx, turn: Turn, p: ReadPayload) -> Result<ReportReadReply, AppError> {
    let id = ReportId::parse(&p.report_id)?;
    let report = ctx
        .state
        .reports()
        .read_report(&ctx.session.user, &id, turn)
        .await?;
    Ok(ReportReadReply::from(report))
}
