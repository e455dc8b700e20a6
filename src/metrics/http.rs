//! HTTP metrics: requests by route template and status, latency by route template.
//!
//! The route label is the template axum matched (`MatchedPath`, e.g. `/api/chats/{chat_id}`),
//! so a new route is counted under its own template with no list to keep: its handles are made
//! on its first request. Only registered templates ever match, so the label's cardinality is
//! the router's route count; a request no route matched is counted as `unmatched`.
//! `/metrics` is not counted: scrapes would drown everything else.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::{Metrics, latency, reg};

/// The label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// HTTP statuses counted by their code; any other status is counted as `other`.
const HTTP_STATUSES: &[u16] = &[
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502,
    503, 504,
];

/// Handles for one route template.
pub struct RouteMetrics {
    route: Box<str>,
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
                    .with_label_values(&[&*self.route, label.as_str()])
            })
            .inc();
    }
}

/// Every route template seen so far and its handles, made on a template's first request.
pub struct HttpRoutes {
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Read-locked on every request (a hit allocates nothing); write-locked once per template.
    seen: RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>,
}

impl HttpRoutes {
    fn route(&self, template: &str) -> Arc<RouteMetrics> {
        if let Some(m) = self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(template)
        {
            return m.clone();
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        seen.entry(template.into())
            .or_insert_with(|| {
                Arc::new(RouteMetrics {
                    route: template.into(),
                    duration: self.duration.with_label_values(&[template]),
                    statuses: std::array::from_fn(|_| OnceLock::new()),
                    requests: self.requests.clone(),
                })
            })
            .clone()
    }
}

/// Registers the HTTP metrics; the `unmatched` route's handles exist from the start.
pub(super) fn register(r: &Registry) -> HttpRoutes {
    let requests = reg(
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
    let duration = reg(
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
    let routes = HttpRoutes {
        requests,
        duration,
        seen: RwLock::default(),
    };
    routes.route(UNMATCHED);
    routes
}

impl Metrics {
    /// The handles for the route template axum matched (`MatchedPath`); `None` (no route
    /// matched) gives `unmatched`.
    pub fn http_route(&self, template: Option<&str>) -> Arc<RouteMetrics> {
        self.http_routes.route(template.unwrap_or(UNMATCHED))
    }
}
