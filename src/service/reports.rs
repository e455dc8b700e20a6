//! Reports: staff send them to a user, who reads them; both list them.

use serde::Serialize;

use crate::cluster::rooms;
use crate::domain::{
    Actor, AuditAction, AuditTarget, AuthUser, NewReport, Report, ReportCursor, ReportId,
    ReportInput, ReportQuery, Timestamp, now, parse_plain_id, rfc3339,
};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::ordering::Turn;
use crate::service::desk::audit::Audit;
use crate::service::emit::Emitter;
use crate::service::events::{ReceiveReport, ReportRead};
use crate::state::NodeState;
use crate::store::Store;
use crate::webhooks::{Check, fresh_id};

/// What marking a report read answers (the `report:read` ack and the REST response).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportReadReply {
    pub report_id: ReportId,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub read_at: Timestamp,
}

impl From<Report> for ReportReadReply {
    fn from(report: Report) -> Self {
        Self {
            read_at: report.read_at.unwrap_or_else(now),
            report_id: report.id,
        }
    }
}

/// The report use cases.
#[derive(Clone, Copy)]
pub struct Reports<'a> {
    /// Reports.
    store: &'a dyn Store,
    /// Reports saved.
    metrics: &'a Metrics,
    /// `receiveReportMessage`, `report:read`.
    emitter: Emitter<'a>,
    /// Records each report sent.
    audit: Audit<'a>,
}

impl<'a> Reports<'a> {
    /// The node's report use cases.
    pub fn of(node: &'a NodeState) -> Self {
        Reports {
            store: &*node.store,
            metrics: &node.metrics,
            emitter: Emitter::of(node),
            audit: Audit::of(node),
        }
    }

    /// Validates and saves a report (staff only), then delivers it to `user:{userId}`.
    pub async fn send_report(
        &self,
        user: &AuthUser,
        input: ReportInput,
        turn: Turn,
    ) -> Result<Report, AppError> {
        if !user.is_staff() {
            return Err(AppError::forbidden("only staff send report messages"));
        }
        let report = NewReport::parse(input, user)?;
        let check = Check::ReportCreated {
            report: report.id.as_str().to_owned(),
        };
        let (id, key) = (
            format!("rpt_{}", report.id.as_str()),
            format!("report:{}", report.user_id),
        );
        let pledged = self
            .emitter
            .pledge("report.created", id, key, 0, check)
            .await?;
        let report = self
            .emitter
            .saved(self.store.create_report(report).await, &pledged)
            .await?;
        self.metrics.reports_saved.inc();
        let payload = ReceiveReport {
            success: true,
            message: &report,
        };
        self.emitter
            .emit_pledged(
                vec![rooms::user(&report.user_id)],
                Vec::new(),
                &payload,
                pledged.as_ref(),
                turn,
            )
            .await;
        let details = serde_json::json!({
            "reportId": report.id,
            "title": report.title,
            "status": report.status,
        });
        self.audit
            .record(
                &Actor::of(user),
                AuditAction::ReportSend,
                AuditTarget::user(&report.user_id),
                details,
            )
            .await;
        Ok(report)
    }

    /// Marks a report read (its recipient only), then emits `report:read`.
    pub async fn read_report(
        &self,
        user: &AuthUser,
        id: &ReportId,
        turn: Turn,
    ) -> Result<Report, AppError> {
        let report = self
            .store
            .report(id)
            .await?
            .ok_or_else(|| AppError::not_found("report not found"))?;
        if report.user_id != user.id {
            return Err(AppError::forbidden(
                "only the report's recipient marks it read",
            ));
        }
        // Written ahead as it will read unless it was read before (then the store keeps the
        // first read's time, which the live event carries).
        let at = report.read_at.unwrap_or_else(now);
        let ahead = ReportRead {
            report_id: &report.id,
            user_id: &report.user_id,
            read_at: at,
        };
        let check = Check::ReportRead {
            report: report.id.as_str().to_owned(),
            data: serde_json::to_string(&ahead).unwrap_or_default(),
        };
        let key = format!("report:{}", report.user_id);
        let pledged = self
            .emitter
            .pledge("report.read", fresh_id(), key, 0, check)
            .await?;
        let marked = self.store.mark_report_read(id, at).await;
        let report = self.emitter.saved(marked, &pledged).await?;
        let read_at = report.read_at.unwrap_or(at);
        let payload = ReportRead {
            report_id: &report.id,
            user_id: &report.user_id,
            read_at,
        };
        self.emitter
            .emit_pledged(
                vec![rooms::user(&report.user_id), rooms::ADMINS.to_owned()],
                Vec::new(),
                &payload,
                pledged.as_ref(),
                turn,
            )
            .await;
        Ok(report)
    }

    /// Reports of `user_id` (a user: only their own, which is also what they get without
    /// one; staff: anyone's, or everyone's without one), newest first, `limit` at a time.
    pub async fn list_reports(
        &self,
        user: &AuthUser,
        user_id: Option<&str>,
        unread_only: bool,
        after: Option<ReportCursor>,
        limit: usize,
    ) -> Result<(Vec<Report>, Option<ReportCursor>), AppError> {
        // A `userId` no report can have (over 64 characters, control characters) is
        // `VALIDATION`, as in `sendReportMessage` (found by schemathesis: it listed nothing).
        let user_id = user_id.map(|id| parse_plain_id("userId", id)).transpose()?;
        let user_id = match user_id.as_deref() {
            Some(id) if !user.is_staff() && id != user.id => {
                return Err(AppError::forbidden("users read their own reports only"));
            }
            Some(id) => Some(id.to_owned()),
            None if user.is_staff() => None,
            None => Some(user.id.clone()),
        };
        let query = ReportQuery {
            user_id,
            unread_only,
            limit: limit + 1,
            after,
        };
        let mut reports = self.store.list_reports(&query).await?;
        let next = if reports.len() > limit {
            reports.truncate(limit);
            reports.last().map(|r| ReportCursor {
                created_at: r.created_at,
                id: r.id.clone(),
            })
        } else {
            None
        };
        Ok((reports, next))
    }

    /// How many of the caller's own reports are unread.
    pub async fn unread_report_count(&self, user: &AuthUser) -> Result<u64, AppError> {
        Ok(self.store.unread_report_count(&user.id).await?)
    }
}
