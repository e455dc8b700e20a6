//! Admission control (issue #28): a node that cannot take another client right now refuses its
//! new Engine.IO session at once with `503` and `Retry-After`, so the client backs off and
//! retries (socket.io-client treats an HTTP error as a failed transport) instead of timing out;
//! sockets already connected are never touched.

use std::time::Duration;

use switchboard::domain::Role;

use crate::helpers::{ConnectError, Sio, TestNode, WAIT, eventually};

/// Opens a new Engine.IO session over long-polling; returns the status and `Retry-After`.
async fn open_session(node: &TestNode) -> (u16, Option<String>) {
    let res = node
        .http
        .get(node.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), retry)
}

#[tokio::test]
async fn a_full_node_refuses_new_sessions_at_once_and_takes_them_again_when_a_socket_leaves() {
    // Arrange: room for two sockets.
    let node = TestNode::start_with(|c| c.max_connections = Some(2)).await;
    let first = node.socket("full-a", Role::User).await;
    let _second = node.socket("full-b", Role::User).await;

    // Act: a third client, over WebSocket and over long-polling.
    let third = Sio::connect(node.port, Some(&node.token("full-c", Role::User))).await;
    let started = std::time::Instant::now();
    let (status, retry_after) = open_session(&node).await;
    let answered_in = started.elapsed();

    // Assert: refused fast, told to come back; the connected sockets still work.
    assert!(
        matches!(third, Err(ConnectError::Transport(_))),
        "the third socket: {:?}",
        third.map(|s| s.sid)
    );
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(answered_in < Duration::from_secs(2), "{answered_in:?}");
    // The first socket still answers, and was sent no close before its answer.
    let online = first
        .ack("user:online", serde_json::json!({ "userId": "full-a" }))
        .await;
    assert_eq!(online["ok"], true, "{online}");
    assert!(!first.closed(Duration::ZERO).await);
    let metrics = node.state.metrics.render();
    let full = metrics
        .lines()
        .find(|l| l.contains("connections_total") && l.contains("outcome=\"full\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        full >= Some(2),
        "refusals are counted as outcome=full:\n{metrics}"
    );

    // And once a socket leaves, a new one is taken.
    first.close();
    let back = eventually(WAIT, || async {
        Sio::connect(node.port, Some(&node.token("full-c", Role::User)))
            .await
            .is_ok()
    })
    .await;
    assert!(back, "a socket is admitted once there is room");
    node.stop().await;
}

#[tokio::test]
async fn new_sessions_beyond_the_rate_are_refused_and_later_ones_admitted() {
    // Arrange
    let node = TestNode::start_with(|c| c.max_handshakes_per_sec = Some(5)).await;

    // Act: twenty new sessions at once.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(open_session(&node).await.0);
    }

    // Assert: a second's worth (plus what refilled meanwhile) taken, the rest refused.
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(admitted + refused, 20, "{statuses:?}");
    assert!((5..=10).contains(&admitted), "{statuses:?}");
    // The bucket refills: a later session is admitted.
    let later = eventually(WAIT, || async { open_session(&node).await.0 == 200 }).await;
    assert!(later);
    node.stop().await;
}
