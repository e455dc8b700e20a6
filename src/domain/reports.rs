//! Reports: messages from staff to a user (an order, payment or invoice update), their status,
//! and the validated input that creates one.

use serde::{Deserialize, Serialize};

use super::{AuthUser, ReportId, Timestamp, check_len, parse_plain_id, rfc3339, rfc3339_opt};
use crate::error::AppError;

/// Longest report title, in code points.
pub const MAX_REPORT_TITLE_LEN: usize = 200;
/// Longest report body, in code points.
pub const MAX_REPORT_MESSAGE_LEN: usize = 2_000;

/// What kind of news a report carries (the old backend's values, capitalised on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ReportStatus {
    Info,
    Warning,
    Issue,
    Summary,
}

impl ReportStatus {
    /// Parses a client-given status; anything else is `VALIDATION`.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "Info" => Ok(Self::Info),
            "Warning" => Ok(Self::Warning),
            "Issue" => Ok(Self::Issue),
            "Summary" => Ok(Self::Summary),
            _ => Err(AppError::validation(
                "status must be one of Info, Warning, Issue, Summary",
            )),
        }
    }
    /// The status as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "Info",
            Self::Warning => "Warning",
            Self::Issue => "Issue",
            Self::Summary => "Summary",
        }
    }
}

/// A report message from staff to a user.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub id: ReportId,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    pub title: String,
    pub message: String,
    pub status: ReportStatus,
    pub sent_by: String,
    pub sent_by_name: String,
    pub is_read: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The raw body of `sendReportMessage` and `POST /api/reports`. `sentBy` is ignored if present.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportInput {
    /// The recipient: 1 to 64 characters.
    #[schema(max_length = 64)]
    pub user_id: String,
    #[schema(max_length = 64)]
    pub order_id: Option<String>,
    #[schema(max_length = 64)]
    pub payment_id: Option<String>,
    #[schema(max_length = 64)]
    pub invoice_id: Option<String>,
    /// 1 to 200 characters.
    #[schema(max_length = 200)]
    pub title: String,
    /// 1 to 2,000 characters.
    #[schema(max_length = 2000)]
    pub message: String,
    #[schema(value_type = ReportStatus)]
    pub status: String,
}

/// A report to save, validated.
#[derive(Debug, Clone)]
pub struct NewReport {
    /// Chosen before the save (a webhook's pledge names it).
    pub id: ReportId,
    pub user_id: String,
    pub order_id: Option<String>,
    pub payment_id: Option<String>,
    pub invoice_id: Option<String>,
    pub title: String,
    pub message: String,
    pub status: ReportStatus,
    pub sent_by: String,
    pub sent_by_name: String,
}

impl NewReport {
    /// Validates a report; `sender` is the caller, whose id becomes `sentBy`.
    pub fn parse(input: ReportInput, sender: &AuthUser) -> Result<Self, AppError> {
        let opt = |field: &str, v: Option<String>| v.map(|s| parse_plain_id(field, &s)).transpose();
        let title = input.title.trim().to_owned();
        let message = input.message.trim().to_owned();
        check_len("title", &title, 1, MAX_REPORT_TITLE_LEN)?;
        check_len("message", &message, 1, MAX_REPORT_MESSAGE_LEN)?;
        Ok(Self {
            id: ReportId::generate(),
            user_id: parse_plain_id("userId", &input.user_id)?,
            order_id: opt("orderId", input.order_id)?,
            payment_id: opt("paymentId", input.payment_id)?,
            invoice_id: opt("invoiceId", input.invoice_id)?,
            title,
            message,
            status: ReportStatus::parse(&input.status)?,
            sent_by: sender.id.clone(),
            sent_by_name: sender.name.clone(),
        })
    }
}

/// Where a report list page starts: after this `(createdAt, id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportCursor {
    pub created_at: Timestamp,
    pub id: ReportId,
}

/// Which reports to list, newest first.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Only this recipient's reports; `None` lists all (staff).
    pub user_id: Option<String>,
    pub unread_only: bool,
    pub limit: usize,
    pub after: Option<ReportCursor>,
}
