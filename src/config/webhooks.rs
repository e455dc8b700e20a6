//! The webhook settings (`WEBHOOK_*`, `WEBHOOKS_FILE`, `UNREAD_REMINDER_SECS`), flattened into
//! [`super::Config`]; `webhooks/settings.rs` turns them into checked endpoints.

use std::path::PathBuf;
use std::time::Duration;

/// The webhook settings of [`crate::config::Config`] (flattened into it).
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookSettings {
    /// One webhook endpoint's URL (with `WEBHOOK_SECRET`, read from the environment only).
    #[arg(long, env = "WEBHOOK_URL")]
    pub url: Option<String>,
    /// `whsec_` secret(s) of `WEBHOOK_URL`, space-separated during a rotation (environment only).
    #[arg(skip)]
    pub secret: Option<super::Secret>,
    /// The event types `WEBHOOK_URL` gets: comma-separated, or `*` for all.
    #[arg(long, env = "WEBHOOK_EVENTS", default_value = "*")]
    pub events: String,
    /// A JSON file of several endpoints, each with its name, URL, secrets and event types
    /// (docs/webhooks.md).
    #[arg(long = "webhooks-file", env = "WEBHOOKS_FILE")]
    pub file: Option<PathBuf>,
    /// How long one delivery attempt may take, in seconds.
    #[arg(
        long = "webhook-timeout-secs",
        value_name = "WEBHOOK_TIMEOUT_SECS",
        env = "WEBHOOK_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub timeout_secs: u64,
    /// How long an event is retried before it is kept as failed, in seconds.
    #[arg(
        long = "webhook-retry-for-secs",
        value_name = "WEBHOOK_RETRY_FOR_SECS",
        env = "WEBHOOK_RETRY_FOR_SECS",
        default_value_t = 86_400
    )]
    pub retry_for_secs: u64,
    /// The longest wait between two attempts, in seconds (the backoff doubles from 1 s up to it).
    #[arg(
        long = "webhook-max-backoff-secs",
        value_name = "WEBHOOK_MAX_BACKOFF_SECS",
        env = "WEBHOOK_MAX_BACKOFF_SECS",
        default_value_t = 600
    )]
    pub max_backoff_secs: u64,
    /// When `chat.unread` fires: seconds a message may stay unread (0: never).
    #[arg(
        long = "unread-reminder-secs",
        value_name = "UNREAD_REMINDER_SECS",
        env = "UNREAD_REMINDER_SECS",
        default_value_t = 120
    )]
    pub unread_reminder_secs: u64,
    /// How long the cluster's webhook sender holds its Redis lease without renewing it, in
    /// seconds: a dead sender's events are taken over after at most this long.
    #[arg(
        long = "webhook-lease-secs",
        value_name = "WEBHOOK_LEASE_SECS",
        env = "WEBHOOK_LEASE_SECS",
        default_value_t = 10
    )]
    pub lease_secs: u64,
    /// How much webhook event data one node keeps in memory on its way to the outbox, in bytes
    /// (while the outbox is down: past it, `message.created` is left to the reconcile pass and
    /// other events wait for room).
    #[arg(
        long = "webhook-queue-bytes",
        value_name = "WEBHOOK_QUEUE_BYTES",
        env = "WEBHOOK_QUEUE_BYTES",
        default_value_t = 16 * 1024 * 1024
    )]
    pub queue_bytes: usize,
}

impl WebhookSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    pub fn retry_for(&self) -> Duration {
        Duration::from_secs(self.retry_for_secs)
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_secs.max(1))
    }

    /// `None` when reminders are off.
    pub fn unread_reminder(&self) -> Option<Duration> {
        (self.unread_reminder_secs > 0).then(|| Duration::from_secs(self.unread_reminder_secs))
    }

    /// The queue's size in KiB (at least 64 KiB).
    pub fn queue_kib(&self) -> usize {
        (self.queue_bytes / 1024).max(64)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(2))
    }
}
