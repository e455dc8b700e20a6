//! Staff availability (PROTOCOL.md, "The support desk"): `staff:availability` both ways,
//! `GET /api/support/availability`, the coalesced `support:availability`, on one node and
//! across two nodes with a real Redis.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::Role;
use switchboard::service::desk::availability::SUPPORT_EVERY;

use crate::helpers::quiet::no_more;
use crate::helpers::{Cluster, Sio, TestNode, Topology, eventually};

/// Longer than the 5 s between two `support:availability`.
const COALESCED: Duration = Duration::from_secs(9);

async fn support(node: &TestNode) -> Value {
    let token = node.token("asker", Role::User);
    let (status, body) = node
        .call(Method::GET, "/api/support/availability", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn say(socket: &Sio, status: &str) -> Value {
    socket
        .ack("staff:availability", json!({ "status": status }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staff_availability_reaches_admins_and_users_hear_support_flip_at_most_once_per_interval() {
    let node = TestNode::start_with(|c| c.offline_grace = Duration::from_millis(300)).await;
    let user = node.socket("u1", Role::User).await;
    assert_eq!(
        support(&node).await,
        json!({ "available": false, "staff": 0 })
    );

    // A watcher admin who is away does not count.
    let watcher = node.socket("a9", Role::Admin).await;
    assert_eq!(
        watcher.event("staff:availability").await,
        json!({ "userId": "a9", "status": "available" })
    );
    assert_eq!(say(&watcher, "away").await["ok"], true);
    assert_eq!(
        watcher.event("staff:availability").await,
        json!({ "userId": "a9", "status": "away" })
    );
    assert_eq!(
        support(&node).await,
        json!({ "available": false, "staff": 0 })
    );
    // (The watcher's first socket flipped support on; its `away` flips it back within 5 s.)
    assert_eq!(
        user.event("support:availability").await,
        json!({ "available": true })
    );
    let back_off = user.try_event("support:availability", COALESCED).await;
    assert_eq!(back_off, Some(json!({ "available": false })));

    // Act: an agent connects and flaps.
    let agent = node.socket("a1", Role::Admin).await;
    assert_eq!(watcher.event("staff:availability").await["userId"], "a1");
    for status in ["away", "available", "away", "available"] {
        assert_eq!(say(&agent, status).await["ok"], true);
    }

    // Assert: one `true` for users (coalesced), never who; staff see each transition.
    assert_eq!(
        user.try_event("support:availability", COALESCED).await,
        Some(json!({ "available": true }))
    );
    // Once the node's re-check (one `SUPPORT_EVERY` after the announcement) has found
    // nothing new, nothing more can be said without a new change.
    let settled = eventually(2 * SUPPORT_EVERY, || async {
        !node.state.support_recheck.load(Ordering::Acquire)
    })
    .await;
    assert!(settled, "the support re-check never ended");
    no_more(
        &user,
        "u1",
        "support:availability",
        &[&node],
        "one announcement for the flapping",
    )
    .await;
    assert_eq!(watcher.drain("staff:availability").len(), 4);
    assert_eq!(
        support(&node).await,
        json!({ "available": true, "staff": 1 })
    );
    assert_eq!(node.user_status("a1").await["availability"], "available");

    // Users may not say it; an unknown status is VALIDATION.
    assert_eq!(say(&user, "away").await["error"]["code"], "FORBIDDEN");
    assert_eq!(say(&agent, "busy").await["error"]["code"], "VALIDATION");

    // The agent's presence ends: `offline` to admins, and support is off again.
    agent.close();
    assert_eq!(
        watcher.event("staff:availability").await,
        json!({ "userId": "a1", "status": "offline" })
    );
    assert_eq!(
        support(&node).await,
        json!({ "available": false, "staff": 0 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn availability_is_one_fact_across_nodes_and_away_holds_for_a_second_socket() {
    let cluster = Cluster::build(Topology::Single)
        .named(&["avail-a", "avail-b"])
        .start()
        .await;
    let [a, b] = cluster.nodes();

    let first = a.socket("a1", Role::Admin).await;
    first.event("staff:availability").await;
    assert_eq!(support(b).await, json!({ "available": true, "staff": 1 }));
    assert_eq!(say(&first, "away").await["ok"], true);
    assert_eq!(first.event("staff:availability").await["status"], "away");
    assert_eq!(support(b).await, json!({ "available": false, "staff": 0 }));

    // A second socket on the other node keeps `away` (same presence session).
    let second = b.socket("a1", Role::Admin).await;
    // Once its connect handler has run (presence is its last step), nothing it emitted is
    // still on its way after the witness.
    assert!(
        eventually(COALESCED, || async {
            b.user_status("a1").await["sockets"] == 2
        })
        .await,
        "the second socket registered"
    );
    no_more(
        &second,
        "a1",
        "staff:availability",
        &[a, b],
        "a second socket keeps away",
    )
    .await;
    assert_eq!(support(a).await["staff"], 0);
    assert_eq!(say(&second, "available").await["ok"], true);
    assert_eq!(
        first.event("staff:availability").await,
        json!({ "userId": "a1", "status": "available" })
    );
    assert_eq!(support(a).await, json!({ "available": true, "staff": 1 }));
    assert_eq!(b.user_status("a1").await["availability"], "available");
    cluster.stop().await;
}
