//! Every metric Switchboard exports, in one registry, with the `switchboard_` prefix and unit
//! suffixes. Labels are of low cardinality only (event name, outcome, route template, operation,
//! status): never a user, chat or socket id. The node's name is a constant label on every series.
//!
//! Hot-path handles are resolved once at start-up ([`EventMetrics`], [`StoreMetrics`],
//! [`RouteMetrics`], the connection outcomes), so recording is an atomic add on a handle found by
//! index or by a lookup of a `&str` in a map built at start: no allocation, no lock, no label
//! hashing inside `prometheus`. The one exception is the first request of a given route with a
//! given status, which creates that series once (see [`RouteMetrics::record`]).
//!
//! `docs/operations.md` lists every metric; `tests/ops/check_metric_names.py` checks that each
//! name a dashboard panel or an alert uses is one a node really exports.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::client_events::{ClientEvent, UNKNOWN_LABEL};

/// Buckets for handling latencies: 100 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The outcome label of an event: `ok` or an error code in lower case.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "unauthorized",
    "forbidden",
    "validation",
    "not_found",
    "rate_limited",
    "payload_too_large",
    "unavailable",
    "internal",
];

/// Store operations, named after the [`Store`](crate::store::Store) methods. An operation not
/// listed here is counted as `other`: add it here when a new one appears.
pub const STORE_OPERATIONS: &[&str] = &[
    "ping",
    "create_chat",
    "chat",
    "list_chats",
    "update_chat",
    "chat_partners",
    "save_message",
    "message",
    "messages",
    "mark_read",
    "create_report",
    "report",
    "list_reports",
    "mark_report_read",
    "unread_report_count",
    "save_upload",
    "upload",
    "other",
];

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
    "other",
    "unmatched",
];

/// HTTP statuses counted by their code; any other status is counted as `other`.
const HTTP_STATUSES: &[u16] = &[
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502,
    503, 504,
];

/// Why a Socket.IO handshake ended as it did: the `outcome` label of `connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOutcome {
    Accepted = 0,
    /// Missing, malformed, expired or wrongly signed token.
    Unauthorized = 1,
    /// Refused because the node is draining.
    Draining = 2,
}

const CONNECTION_OUTCOMES: &[&str] = &["accepted", "unauthorized", "draining"];

/// The backing services `/readyz` depends on: the `dependency` label of `dependency_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Store = 0,
    /// The adapter and presence backend (Redis in a cluster, in-process for a single node).
    Adapter = 1,
}

const DEPENDENCIES: &[&str] = &["store", "adapter"];

/// Pre-resolved handles for one event name.
pub struct EventMetrics {
    /// One counter per outcome, indexed like [`OUTCOMES`].
    pub outcomes: Vec<IntCounter>,
    pub duration: Histogram,
}

/// Pre-resolved handles for one store operation.
pub struct StoreMetrics {
    pub duration: Histogram,
    pub errors: IntCounter,
}

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

/// All metrics of a node.
pub struct Metrics {
    registry: Registry,
    pub sockets_connected: IntGauge,
    /// Indexed like [`CONNECTION_OUTCOMES`].
    connections: Vec<IntCounter>,
    events: Vec<EventMetrics>,
    pub messages_saved: IntCounter,
    pub messages_emitted: IntCounter,
    pub reports_saved: IntCounter,
    /// Indexed like [`STORE_OPERATIONS`].
    store: Vec<StoreMetrics>,
    pub fanout_publishes: IntCounter,
    pub fanout_failures: IntCounter,
    pub fanout_duration: Histogram,
    pub presence_users_online: IntGauge,
    pub presence_reaped_users: IntCounter,
    /// `ok` and `error`.
    presence_heartbeats: [IntCounter; 2],
    presence_heartbeat_last_success: Gauge,
    /// Keyed by the static route template.
    http_routes: HashMap<&'static str, RouteMetrics>,
    /// Indexed like [`DEPENDENCIES`].
    dependency_up: Vec<IntGauge>,
    pub draining: IntGauge,
    /// Connection state recovery.
    pub recovery: RecoveryMetrics,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    /// Registers every metric. `node` becomes a constant label on all of them;
    /// `heartbeat_interval` is exported so alerts can tell a lagging reaper.
    pub fn new(node: &str) -> Self {
        Self::with_heartbeat_interval(node, Duration::from_secs(5))
    }

    /// [`Metrics::new`] with the node's presence heartbeat interval.
    pub fn with_heartbeat_interval(node: &str, heartbeat_interval: Duration) -> Self {
        let labels = std::iter::once(("node".to_owned(), node.to_owned())).collect();
        let registry =
            Registry::new_custom(Some("switchboard".into()), Some(labels)).expect("valid prefix");
        let r = &registry;
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };

        let events_total = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "events_received_total",
                    "Client events received, by event and outcome",
                ),
                &["event", "outcome"],
            )
            .unwrap(),
        );
        let event_duration = reg(
            r,
            HistogramVec::new(
                latency(
                    "event_handling_duration_seconds",
                    "Time to handle a client event, by event",
                ),
                &["event"],
            )
            .unwrap(),
        );
        // One set per client event of the table, in its order, then `unknown`.
        let events = ClientEvent::ALL
            .iter()
            .map(|e| e.name())
            .chain([UNKNOWN_LABEL])
            .map(|e| EventMetrics {
                outcomes: OUTCOMES
                    .iter()
                    .map(|o| events_total.with_label_values(&[e, o]))
                    .collect(),
                duration: event_duration.with_label_values(&[e]),
            })
            .collect();

        let connections = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "connections_total",
                    "Socket.IO handshakes, by outcome (accepted, or the refusal reason)",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        let connections = CONNECTION_OUTCOMES
            .iter()
            .map(|o| connections.with_label_values(&[o]))
            .collect();

        let store_duration = reg(
            r,
            HistogramVec::new(
                latency(
                    "store_operation_duration_seconds",
                    "Store operation latency, by operation",
                ),
                &["operation"],
            )
            .unwrap(),
        );
        let store_errors = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "store_errors_total",
                    "Store operations that failed, by operation",
                ),
                &["operation"],
            )
            .unwrap(),
        );
        let store = STORE_OPERATIONS
            .iter()
            .map(|op| StoreMetrics {
                duration: store_duration.with_label_values(&[op]),
                errors: store_errors.with_label_values(&[op]),
            })
            .collect();

        let heartbeats = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "presence_heartbeats_total",
                    "Presence heartbeats (renewal and reaping of dead nodes), by outcome",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        let presence_heartbeats = [
            heartbeats.with_label_values(&["ok"]),
            heartbeats.with_label_values(&["error"]),
        ];
        let presence_heartbeat_last_success = reg(
            r,
            Gauge::new(
                "presence_heartbeat_last_success_timestamp_seconds",
                "Unix time of this node's last successful presence heartbeat",
            )
            .unwrap(),
        );
        let interval = reg(r, Gauge::new(
            "presence_heartbeat_interval_seconds",
            "How often this node renews its presence and reaps dead nodes (HEARTBEAT_INTERVAL_SECS)",
        ).unwrap());
        interval.set(heartbeat_interval.as_secs_f64());

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
        let http_routes = HTTP_ROUTES
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
            .collect();

        let dependency_up = reg(r, IntGaugeVec::new(
            Opts::new("dependency_up", "1 while this node reaches the dependency (store, adapter), else 0; checked periodically and by /readyz"),
            &["dependency"],
        ).unwrap());
        let dependency_up = DEPENDENCIES
            .iter()
            .map(|d| dependency_up.with_label_values(&[d]))
            .collect();

        let build = reg(
            r,
            IntGauge::with_opts(
                Opts::new(
                    "build_info",
                    "Version and commit of the running binary (always 1)",
                )
                .const_label("version", env!("CARGO_PKG_VERSION"))
                .const_label(
                    "commit",
                    option_env!("SWITCHBOARD_COMMIT").unwrap_or("unknown"),
                ),
            )
            .unwrap(),
        );
        build.set(1);

        Self {
            sockets_connected: reg(
                r,
                IntGauge::new("sockets_connected", "Sockets connected to this node now").unwrap(),
            ),
            connections,
            events,
            messages_saved: reg(
                r,
                IntCounter::new(
                    "messages_saved_total",
                    "Chat messages saved (retries excluded)",
                )
                .unwrap(),
            ),
            messages_emitted: reg(
                r,
                IntCounter::new(
                    "messages_emitted_total",
                    "message:new emissions sent to the fan-out",
                )
                .unwrap(),
            ),
            reports_saved: reg(
                r,
                IntCounter::new("reports_saved_total", "Report messages saved").unwrap(),
            ),
            store,
            fanout_publishes: reg(
                r,
                IntCounter::new(
                    "adapter_publishes_total",
                    "Room emissions handed to the adapter",
                )
                .unwrap(),
            ),
            fanout_failures: reg(
                r,
                IntCounter::new(
                    "adapter_failures_total",
                    "Room emissions the adapter failed to publish",
                )
                .unwrap(),
            ),
            fanout_duration: reg(
                r,
                Histogram::with_opts(latency(
                    "adapter_publish_duration_seconds",
                    "Time to hand an emission to the adapter",
                ))
                .unwrap(),
            ),
            presence_users_online: reg(
                r,
                IntGauge::new(
                    "presence_users_online",
                    "Distinct users online in the cluster (as last seen by this node)",
                )
                .unwrap(),
            ),
            presence_reaped_users: reg(
                r,
                IntCounter::new(
                    "presence_reaped_users_total",
                    "Users set offline because their node died",
                )
                .unwrap(),
            ),
            presence_heartbeats,
            presence_heartbeat_last_success,
            http_routes,
            dependency_up,
            draining: reg(
                r,
                IntGauge::new(
                    "draining",
                    "1 while this node drains (after SIGTERM), else 0",
                )
                .unwrap(),
            ),
            recovery: RecoveryMetrics::register(r),
            registry,
        }
    }

    /// The handles for a client event (`None`, an event the protocol does not define, is
    /// counted as `unknown`). An index, not a name lookup: this runs for every event.
    pub fn event(&self, event: Option<ClientEvent>) -> &EventMetrics {
        &self.events[event.map_or(ClientEvent::ALL.len(), |e| e as usize)]
    }

    /// Counts a handshake.
    pub fn connection(&self, outcome: ConnectionOutcome) {
        self.connections[outcome as usize].inc();
    }

    /// The handles for a store operation (unlisted names share `other`).
    pub fn store(&self, operation: &str) -> &StoreMetrics {
        let i = STORE_OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(STORE_OPERATIONS.len() - 1);
        &self.store[i]
    }

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

    /// Records a presence heartbeat's outcome.
    pub fn presence_heartbeat(&self, ok: bool) {
        self.presence_heartbeats[usize::from(!ok)].inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.presence_heartbeat_last_success.set(now.as_secs_f64());
        }
    }

    /// Records whether a dependency answered.
    pub fn dependency(&self, dependency: Dependency, up: bool) {
        self.dependency_up[dependency as usize].set(i64::from(up));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

/// The outcome index for [`EventMetrics::outcomes`].
pub fn outcome_index(code: Option<crate::error::ErrorCode>) -> usize {
    use crate::error::ErrorCode::*;
    match code {
        None => 0,
        Some(Unauthorized) => 1,
        Some(Forbidden) => 2,
        Some(Validation) => 3,
        Some(NotFound) => 4,
        Some(RateLimited) => 5,
        Some(PayloadTooLarge) => 6,
        Some(Unavailable) => 7,
        Some(Internal) => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `name` whose labels include every `labels` pair.
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn every_series_carries_the_node_label_and_the_prefix() {
        let m = Metrics::new("n1");
        m.messages_saved.inc();
        let text = m.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("switchboard_"), "{line}");
            assert!(line.contains("node=\"n1\""), "{line}");
        }
        assert_eq!(
            sample(&text, "switchboard_messages_saved_total", &[("node", "n1")]),
            Some(1.0)
        );
    }

    #[test]
    fn store_operations_outside_the_list_count_as_other() {
        let m = Metrics::new("n1");
        m.store("save_message").errors.inc();
        m.store("something_new").errors.inc();
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "switchboard_store_errors_total",
                &[("operation", "save_message")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "switchboard_store_errors_total",
                &[("operation", "other")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "switchboard_store_errors_total",
                &[("operation", "chat")]
            ),
            Some(0.0)
        );
    }

    #[test]
    fn http_requests_are_counted_by_template_and_status() {
        let m = Metrics::new("n1");
        m.http_route(Some("/api/chats/{chat_id}"))
            .record(200, Duration::from_millis(3));
        m.http_route(Some("/api/chats/{chat_id}"))
            .record(200, Duration::from_millis(3));
        m.http_route(Some("/api/unknown"))
            .record(418, Duration::from_millis(1));
        m.http_route(None).record(404, Duration::from_millis(1));
        let text = m.render();
        let count = |route: &str, status: &str| {
            sample(
                &text,
                "switchboard_http_requests_total",
                &[("route", route), ("status", status)],
            )
        };
        assert_eq!(count("/api/chats/{chat_id}", "200"), Some(2.0));
        assert_eq!(count("other", "other"), Some(1.0));
        assert_eq!(count("unmatched", "404"), Some(1.0));
        assert_eq!(
            count("/api/chats", "200"),
            None,
            "a pair never seen exports no series"
        );
        let latency = sample(
            &text,
            "switchboard_http_request_duration_seconds_count",
            &[("route", "/api/chats/{chat_id}")],
        );
        assert_eq!(latency, Some(2.0));
    }

    #[test]
    fn build_info_names_version_and_commit() {
        let text = Metrics::new("n1").render();
        let line = text
            .lines()
            .find(|l| l.starts_with("switchboard_build_info{"))
            .expect("build_info");
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(line.contains("commit=\""), "{line}");
        assert!(line.ends_with(" 1"), "{line}");
    }
}

/// The `outcome` label of `recovery_attempts_total`: recovered, or why not (the names of
/// [`crate::recovery::Refusal`]).
pub const RECOVERY_OUTCOMES: [&str; 7] = [
    "recovered",
    "malformed",
    "unknown",
    "foreign",
    "expired",
    "too_far_behind",
    "unavailable",
];

/// Connection state recovery's metrics (`docs/recovery.md`).
pub struct RecoveryMetrics {
    /// Indexed like [`RECOVERY_OUTCOMES`].
    attempts: Vec<IntCounter>,
    pub events_replayed: IntCounter,
    /// Recoverable emissions logged, and those the log could not take (sent without offset).
    pub log_appends: IntCounter,
    pub log_failures: IntCounter,
    pub log_entries: IntGauge,
    /// How much older than the window the log's oldest entry is (0 when trimming keeps up).
    pub trim_lag: Gauge,
}

impl RecoveryMetrics {
    fn register(r: &Registry) -> Self {
        let attempts = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "recovery_attempts_total",
                    "Handshakes that asked to resume a session, by outcome (recovered, or the refusal reason)",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        RecoveryMetrics {
            attempts: RECOVERY_OUTCOMES
                .iter()
                .map(|o| attempts.with_label_values(&[o]))
                .collect(),
            events_replayed: reg(
                r,
                IntCounter::new(
                    "recovery_events_replayed_total",
                    "Events sent to recovered sockets from the recovery log",
                )
                .unwrap(),
            ),
            log_appends: reg(
                r,
                IntCounter::new(
                    "recovery_log_appends_total",
                    "Recoverable emissions written to the recovery log",
                )
                .unwrap(),
            ),
            log_failures: reg(
                r,
                IntCounter::new(
                    "recovery_log_failures_total",
                    "Recoverable emissions the recovery log could not take (sent without an offset)",
                )
                .unwrap(),
            ),
            log_entries: reg(
                r,
                IntGauge::new("recovery_log_entries", "Entries in the recovery log").unwrap(),
            ),
            trim_lag: reg(
                r,
                Gauge::new(
                    "recovery_log_trim_lag_seconds",
                    "How much older than RECOVERY_WINDOW_SECS the recovery log's oldest entry is",
                )
                .unwrap(),
            ),
        }
    }

    /// Counts a resume attempt: `Ok` recovered, or the refusal.
    pub fn attempt(&self, outcome: Result<(), crate::recovery::Refusal>) {
        let label = outcome.err().map_or("recovered", |r| r.as_str());
        let i = RECOVERY_OUTCOMES
            .iter()
            .position(|o| *o == label)
            .unwrap_or(0);
        self.attempts[i].inc();
    }
}
