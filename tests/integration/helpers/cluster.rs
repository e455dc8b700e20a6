//! What the cluster tests (`cluster.rs`, `failover.rs`, `contract_gaps.rs`, `redis_cost.rs`)
//! share: waiting for presence transitions and messages on a socket, the staff REST reads they
//! compare across nodes, readiness, and a data directory the nodes of one cluster share.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use switchboard::domain::Role;

use super::{Sio, TestNode, eventually};

/// Long enough for any cross-node event.
pub const LONG: Duration = Duration::from_secs(10);

pub fn shared_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

/// Waits for the next `user:status` about `user` (others are discarded).
pub async fn status_of(socket: &Sio, user: &str, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = socket.try_event("user:status", left).await?;
        if event["userId"] == user {
            return event["status"].as_str().map(str::to_owned);
        }
    }
}

/// The `user:status` events about `user` already queued on `socket`.
pub fn queued_statuses(socket: &Sio, user: &str) -> Vec<String> {
    socket
        .drain("user:status")
        .into_iter()
        .filter(|e| e["userId"] == user)
        .filter_map(|e| e["status"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until `socket` has had `message:new` for every id in `ids`.
pub async fn receives_all(
    socket: &Sio,
    ids: &BTreeSet<String>,
    within: Duration,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + within;
    while !ids.is_subset(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.try_event("message:new", left).await {
            Some(e) => {
                seen.insert(e["message"]["id"].as_str().unwrap_or_default().to_owned());
            }
            None => break,
        }
    }
    seen
}

/// A staff GET that must succeed; returns its body.
async fn staff_get(node: &TestNode, path: &str) -> Value {
    let token = node.token("audit", Role::Admin);
    let (status, body) = node.call(Method::GET, path, Some(&token), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

pub async fn active_users(node: &TestNode, query: &str) -> Value {
    staff_get(node, &format!("/api/socket/active-users{query}")).await
}

pub async fn user_status(node: &TestNode, user: &str) -> Value {
    staff_get(node, &format!("/api/users/{user}/status")).await
}

pub async fn readyz(port: u16) -> u16 {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits (up to `LONG`) until both nodes answer `/readyz` with 200.
pub async fn both_ready(a: &TestNode, b: &TestNode) -> bool {
    eventually(LONG, || async {
        readyz(a.port).await == 200 && readyz(b.port).await == 200
    })
    .await
}
