//! `sendReportMessage` and `report:read`.

use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{Ctx, Reply, on};
use crate::domain::{Report, ReportId, ReportInput, Timestamp, rfc3339};
use crate::error::{AppError, ErrorBody};

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Read {
    report_id: ReportId,
    #[serde(serialize_with = "rfc3339")]
    read_at: Timestamp,
}

pub fn register<A: Adapter>(s: &SocketRef<A>, ctx: &Ctx) {
    on(
        s,
        ctx,
        "sendReportMessage",
        Reply::ReportSent,
        |ctx: Ctx, p: ReportInput| async move {
            let report: Report = ctx.state.send_report(&ctx.session.user, p).await?;
            Ok(report)
        },
    );
    on(
        s,
        ctx,
        "report:read",
        Reply::Standard,
        |ctx: Ctx, p: ReadPayload| async move {
            let id = ReportId::parse(&p.report_id)?;
            let report = ctx.state.read_report(&ctx.session.user, &id).await?;
            Ok(Read {
                read_at: report.read_at.unwrap_or_else(crate::domain::now),
                report_id: report.id,
            })
        },
    );
}
