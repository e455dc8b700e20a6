//! `sendReportMessage` and `report:read`.

use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;

use super::{Ctx, Reply, Routes};
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
struct ReadPayload {
    report_id: String,
}

pub fn routes<A: Adapter>(routes: &mut Routes<A>) {
    routes.on(
        "sendReportMessage",
        Reply::ReportSent,
        |ctx: Ctx, p: ReportInput| async move {
            let report: Report = ctx.state.send_report(&ctx.session.user, p).await?;
            Ok(report)
        },
    );
    routes.on(
        "report:read",
        Reply::Standard,
        |ctx: Ctx, p: ReadPayload| async move {
            let id = ReportId::parse(&p.report_id)?;
            let report = ctx.state.read_report(&ctx.session.user, &id).await?;
            Ok(ReportReadReply::from(report))
        },
    );
}
