//! HTTP metrics: requests by route template and status, latency by route template.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::{Metrics, latency, reg};

/// REST route templates as axum matches them. A template missing here is counted as `other`
/// (add it here when a route is added); a request no route matched is counted as `unmatched`.
/// `/metrics` is not counted: scrapes would drown everything else.
pub const HTTP_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api/chats",
    "/api/chats/{chat_id}",
    "/api/chats/{chat_id}/messages",
    "/api/reports",
    "/api/reports/unread-count",
    "/api/reports/{report_id}/read",
    "/api/uploads",
    "/api/files/{file_id}",
    "/api/socket/active-users",
    "/api/users/{user_id}/status",
    "/api/audit",
    "/api/webhooks/failed",
    "/api/webhooks/resend",
    "other",
    "unmatched",
];

/// HTTP statuses counted by their code; any other status is counted as `other`.
const HTTP_STATUSES: &[u16] = &[
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502,
    503, 504,
];

/// Handles for one route template.
pub struct RouteMetrics {
    route: &'static str,
    duration: Histogram,
    /// `http_requests_total{route, status}`, created on the first request with each status:
    /// pre-creating every route and status pair would export hundreds of series that stay zero.
    statuses: [OnceLock<IntCounter>; HTTP_STATUSES.len() + 1],
    requests: IntCounterVec,
}

impl RouteMetrics {
    /// Counts and times one request.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let i = HTTP_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(HTTP_STATUSES.len());
        self.statuses[i]
            .get_or_init(|| {
                let label = HTTP_STATUSES
                    .get(i)
                    .map_or_else(|| "other".to_owned(), u16::to_string);
                self.requests
                    .with_label_values(&[self.route, label.as_str()])
            })
            .inc();
    }
}

/// Registers the HTTP metrics: one [`RouteMetrics`] per template, keyed by it.
pub(super) fn register(r: &Registry) -> HashMap<&'static str, RouteMetrics> {
    let http_requests = reg(
        r,
        IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests, by route template and status",
            ),
            &["route", "status"],
        )
        .unwrap(),
    );
    let http_duration = reg(
        r,
        HistogramVec::new(
            latency(
                "http_request_duration_seconds",
                "HTTP request latency, by route template",
            ),
            &["route"],
        )
        .unwrap(),
    );
    HTTP_ROUTES
        .iter()
        .map(|route| {
            let m = RouteMetrics {
                route,
                duration: http_duration.with_label_values(&[route]),
                statuses: std::array::from_fn(|_| OnceLock::new()),
                requests: http_requests.clone(),
            };
            (*route, m)
        })
        .collect()
}

impl Metrics {
    /// The handles for a REST route template; `None` (no route matched) gives `unmatched`,
    /// an unlisted template `other`.
    pub fn http_route(&self, template: Option<&str>) -> &RouteMetrics {
        let key = match template {
            None => "unmatched",
            Some(t) if self.http_routes.contains_key(t) => t,
            Some(_) => "other",
        };
        &self.http_routes[key]
    }
}
