//! The operator's side of webhooks (superadmin only): list the deliveries kept as failed and
//! send them again (PROTOCOL.md, "Webhooks": "a superadmin may list and resend failed events").

use serde::{Deserialize, Serialize};

use crate::domain::AuthUser;
use crate::error::{AppError, ErrorCode};
use crate::state::NodeState;
use crate::webhooks::Publisher;

/// A delivery kept as failed, as the operator sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedWebhook {
    pub endpoint: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub timestamp: String,
}

/// Which failed deliveries to send again: one endpoint's or all; these ids or all.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resend {
    pub endpoint: Option<String>,
    pub ids: Option<Vec<String>>,
}

/// The operator's webhook use cases.
#[derive(Clone, Copy)]
pub struct WebhookAdmin<'a> {
    /// The running webhooks' outbox and sender (none when no endpoint is configured).
    webhooks: &'a Publisher,
}

impl<'a> WebhookAdmin<'a> {
    /// The node's webhook operator use cases.
    pub fn of(node: &'a NodeState) -> Self {
        WebhookAdmin {
            webhooks: &node.webhooks,
        }
    }

    fn webhook_operator(
        &self,
        user: &AuthUser,
    ) -> Result<&std::sync::Arc<crate::webhooks::Running>, AppError> {
        if user.role != crate::domain::Role::Superadmin {
            return Err(AppError::forbidden("only a superadmin manages webhooks"));
        }
        self.webhooks
            .running()
            .ok_or_else(|| AppError::not_found("no webhook endpoint is configured"))
    }

    fn known_endpoint(
        running: &crate::webhooks::Running,
        endpoint: Option<&str>,
    ) -> Result<(), AppError> {
        match endpoint {
            Some(e) if !running.endpoints.iter().any(|x| x.name == e) => Err(AppError::validation(
                format!("no webhook endpoint named {e:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// Failed deliveries, newest first, at most `limit`.
    pub async fn failed_webhooks(
        &self,
        user: &AuthUser,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedWebhook>, AppError> {
        let running = self.webhook_operator(user)?;
        Self::known_endpoint(running, endpoint)?;
        let rows = running
            .outbox
            .failed(endpoint, limit)
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|d| FailedWebhook {
                timestamp: chrono::DateTime::from_timestamp_millis(d.at_ms)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                endpoint: d.endpoint,
                id: d.id,
                kind: d.kind,
                attempts: d.attempts,
                last_error: d.last_error,
            })
            .collect())
    }

    /// Sends failed deliveries again, with a fresh retry time; how many.
    pub async fn resend_webhooks(&self, user: &AuthUser, which: Resend) -> Result<u64, AppError> {
        let running = self.webhook_operator(user)?;
        Self::known_endpoint(running, which.endpoint.as_deref())?;
        if which
            .ids
            .as_ref()
            .is_some_and(|ids| ids.is_empty() || ids.len() > 1000)
        {
            return Err(AppError::validation("ids: 1 to 1000 webhook ids"));
        }
        let n = running
            .outbox
            .resend(
                which.endpoint.as_deref(),
                which.ids.as_deref(),
                crate::domain::now().timestamp_millis(),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(user_id = %user.id, resent = n, "failed webhooks resent");
        running.wake.notify_waiters();
        Ok(n)
    }
}

fn unavailable(e: crate::webhooks::outbox::OutboxError) -> AppError {
    tracing::warn!(error = %e, "webhook outbox unavailable");
    AppError::new(ErrorCode::Unavailable, "the webhook outbox is unavailable")
}
