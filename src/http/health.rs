//! `/healthz` (alive) and `/readyz` (store and adapter reachable, not draining), and the
//! per-node watcher behind both `/readyz` and `switchboard_dependency_up`.
//!
//! `/readyz` is what load balancers and Kubernetes route by, so it answers at once from
//! [`Readiness`], state that [`watch_dependencies`] keeps current by probing the store and
//! Redis every [`PROBE_INTERVAL`] (each probe bounded by the same time): an outage is noticed
//! within about a second, and no request ever waits on a dependency.
//!
//! A node that has been ready turns `503` only once a dependency has been unreachable for
//! [`READINESS_GRACE`]: a Redis blip of a second or two (a restart, a Sentinel or cluster
//! failover) must not make every node of the cluster refuse new clients at once, which would
//! leave a load balancer nowhere to send them, while the node keeps serving its own sockets
//! through it (see `docs/cluster.md`). A dependency that has never answered since start-up gets
//! no grace: the node is not ready until it does.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::time::Instant;

use crate::app::AppState;
use crate::metrics::Dependency;

/// How long a dependency may be unreachable before `/readyz` turns `503` (PROTOCOL.md allows
/// at most 5 s). Counted from the first failed probe, which comes at most
/// `2 * PROBE_INTERVAL` after the outage began: `503` between 3 and 4 s into an outage.
pub const READINESS_GRACE: Duration = Duration::from_secs(3);

/// How often the store and Redis are probed; also the bound on one probe.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Serialize)]
struct ReadinessBody {
    ready: bool,
    draining: bool,
    store: &'static str,
    adapter: &'static str,
    node: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadinessBody>) {
    let now = Instant::now();
    let r = &state.readiness;
    let (store, adapter) = (r.store.usable(now), r.adapter.usable(now));
    let draining = state.is_draining();
    let ready = store && adapter && !draining;
    let word = |w: &Watched| match (w.reachable(), w.usable(now)) {
        (true, _) => "ok",
        (false, true) => "unreachable (within grace)",
        (false, false) => "unreachable",
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(ReadinessBody {
            ready,
            draining,
            store: word(&r.store),
            adapter: word(&r.adapter),
            node: state.node_id.clone(),
        }),
    )
}

/// What the watcher last learnt about one dependency.
#[derive(Default)]
pub struct Watched {
    /// `None` while reachable; else since when it has been unreachable, and whether it was
    /// ever reachable before (only then does the grace apply). A std lock, held for a copy.
    down: Mutex<Option<Down>>,
    /// It answered at least once (before that, `down` says when we started waiting).
    ever_up: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy)]
struct Down {
    since: Instant,
}

impl Watched {
    /// A dependency not yet probed: unreachable since now, with no grace.
    fn unknown() -> Self {
        Self {
            down: Mutex::new(Some(Down {
                since: Instant::now(),
            })),
            ever_up: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a probe's outcome; returns whether reachability changed.
    pub fn record(&self, up: bool, now: Instant) -> bool {
        let mut down = self.lock();
        let was_up = down.is_none();
        if up {
            *down = None;
            self.ever_up
                .store(true, std::sync::atomic::Ordering::Relaxed);
        } else if was_up {
            *down = Some(Down { since: now });
        }
        was_up != up
    }

    /// The last probe succeeded.
    pub fn reachable(&self) -> bool {
        self.lock().is_none()
    }

    /// The node may take clients as far as this dependency goes: reachable, or unreachable
    /// for less than [`READINESS_GRACE`] after having been reachable.
    pub fn usable(&self, now: Instant) -> bool {
        match *self.lock() {
            None => true,
            Some(d) => {
                self.ever_up.load(std::sync::atomic::Ordering::Relaxed)
                    && now.saturating_duration_since(d.since) < READINESS_GRACE
            }
        }
    }
}

/// The node's readiness inputs, kept current by [`watch_dependencies`].
pub struct Readiness {
    /// The store (MongoDB or the embedded one).
    pub store: Watched,
    /// Redis (the adapter and presence); always reachable on a node without `REDIS_URL`.
    pub adapter: Watched,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            store: Watched::unknown(),
            adapter: Watched::unknown(),
        }
    }
}

/// Probes the store and the adapter once (each within [`PROBE_INTERVAL`]) and records the
/// outcome; returns whether either changed.
pub async fn probe_dependencies(state: &AppState) -> bool {
    let (store, adapter) = tokio::join!(
        async {
            matches!(
                tokio::time::timeout(PROBE_INTERVAL, state.store.ping()).await,
                Ok(Ok(()))
            )
        },
        async {
            matches!(
                tokio::time::timeout(PROBE_INTERVAL, state.presence.ping()).await,
                Ok(Ok(()))
            )
        },
    );
    let now = Instant::now();
    state.metrics.dependency(Dependency::Store, store);
    state.metrics.dependency(Dependency::Adapter, adapter);
    let a = state.readiness.store.record(store, now);
    let b = state.readiness.adapter.record(adapter, now);
    a || b
}

/// One loop per node: probes the dependencies every [`PROBE_INTERVAL`], keeping [`Readiness`]
/// and `switchboard_dependency_up` current whether or not anything asks.
pub async fn watch_dependencies(state: AppState) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Log changes only: an outage of minutes is one line, not one per probe.
        if probe_dependencies(&state).await {
            let r = &state.readiness;
            let (store, adapter) = (r.store.reachable(), r.adapter.reachable());
            if store && adapter {
                tracing::info!(node = %state.node_id, "store and adapter reachable again");
            } else {
                tracing::warn!(node = %state.node_id, store, adapter, grace_secs = READINESS_GRACE.as_secs(), "a dependency is unreachable");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_never_reached_is_not_usable() {
        let w = Watched::unknown();
        assert!(!w.usable(Instant::now()));
    }

    #[test]
    fn an_outage_is_tolerated_for_the_grace_then_not() {
        let w = Watched::unknown();
        let t0 = Instant::now();
        assert!(w.record(true, t0));
        assert!(w.usable(t0));
        assert!(w.record(false, t0));
        assert!(!w.record(false, t0 + Duration::from_secs(1)), "no change");
        assert!(!w.reachable());
        assert!(w.usable(t0 + READINESS_GRACE - Duration::from_millis(1)));
        assert!(!w.usable(t0 + READINESS_GRACE));
        assert!(w.record(true, t0 + READINESS_GRACE));
        assert!(w.usable(t0 + READINESS_GRACE));
    }

    #[test]
    fn the_grace_counts_from_the_first_failed_probe() {
        let w = Watched::unknown();
        let t0 = Instant::now();
        w.record(true, t0);
        w.record(false, t0);
        w.record(false, t0 + Duration::from_secs(2));
        assert!(!w.usable(t0 + READINESS_GRACE + Duration::from_millis(1)));
    }
}
