//! The support desk (PROTOCOL.md, "The support desk"): removing someone, on one node and on
//! three nodes with a real Redis, over real sockets; and the removal records on both stores.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::{RemovalChange, Role, now};
use switchboard::store::{DeskStore, EmbeddedStore};

use crate::helpers::mongo::MongoServer;
use crate::helpers::{Cluster, ConnectError, Sio, TestNode, Topology, WAIT, eventually};

const LONG: Duration = Duration::from_secs(10);

/// `POST /api/users/{target}/{action}` as `actor`: status and body.
pub(crate) async fn act(
    node: &TestNode,
    actor: &str,
    role: Role,
    target: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    let token = node.token(actor, role);
    node.call(
        Method::POST,
        &format!("/api/users/{target}/{action}"),
        Some(&token),
        Some(body),
    )
    .await
}

/// The `connect_error` message of a refused handshake (panics if it was accepted).
pub(crate) async fn refused(port: u16, auth: Value) -> String {
    match Sio::connect_with(port, Some(auth)).await {
        Err(ConnectError::Refused(m)) => m,
        Err(e) => panic!("transport failed: {e:?}"),
        Ok(_) => panic!("handshake accepted"),
    }
}

/// A socket the node has registered in presence (so the removal counts it).
pub(crate) async fn registered(node: &TestNode, id: &str, role: Role, sockets: u64) -> Sio {
    let s = node.socket(id, role).await;
    assert!(
        eventually(WAIT, || async {
            node.user_status(id).await["sockets"] == sockets
        })
        .await,
        "{id} registered"
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnect_with_a_block_closes_every_socket_and_refuses_handshakes_and_rest_until_unblocked()
 {
    // Arrange: a user with two sockets.
    let node = TestNode::start().await;
    let first = registered(&node, "u1", Role::User, 1).await;
    let second = registered(&node, "u1", Role::User, 2).await;
    let token = node.token("u1", Role::User);

    // Act: an admin disconnects them with a one-minute block.
    let (status, body) = act(
        &node,
        "a1",
        Role::Admin,
        "u1",
        "disconnect",
        json!({ "blockSecs": 60, "reason": "abuse" }),
    )
    .await;

    // Assert: both sockets closed by the server, handshakes and REST refused.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userId"], "u1");
    assert_eq!(body["sockets"], 2);
    assert!(body["blockedUntil"].is_string(), "{body}");
    assert!(
        first.closed(WAIT).await && second.closed(WAIT).await,
        "sockets closed"
    );
    let message = refused(node.port, json!({ "token": token })).await;
    assert!(message.starts_with("FORBIDDEN: blocked"), "{message}");
    let (status, body) = node
        .call(Method::GET, "/api/chats", Some(&token), None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("FORBIDDEN")),
        "{body}"
    );

    // The block ends when staff end it.
    let admin = node.token("a1", Role::Admin);
    let (status, body) = node
        .call(Method::DELETE, "/api/users/u1/block", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    Sio::connect(node.port, Some(&token))
        .await
        .expect("unblocked user connects");
    let (status, _) = node
        .call(Method::GET, "/api/chats", Some(&token), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_cannot_remove_anyone_bad_bodies_change_nothing_and_only_superadmins_reach_staff() {
    let node = TestNode::start().await;
    let victim = registered(&node, "u2", Role::User, 1).await;

    // A user may not act; a malformed body is VALIDATION; neither touches the socket.
    let (status, _) = act(&node, "u9", Role::User, "u2", "disconnect", json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = act(&node, "u9", Role::User, "u2", "revoke-tokens", json!({})).await;
    assert_eq!(status, 403);
    for bad in [
        json!({ "blockSecs": 604801 }),
        json!({ "blockSecs": "60" }),
        json!({ "reason": "x".repeat(201) }),
    ] {
        let (status, body) = act(&node, "a1", Role::Admin, "u2", "disconnect", bad.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("VALIDATION")),
            "{bad}: {body}"
        );
    }
    // Nothing changed: the socket answers, and no close came before the answer (a disconnect
    // made by a refused request would have been sent on this connection before it).
    assert_eq!(
        victim.ack("user:online", json!({ "userId": "u2" })).await["ok"],
        true,
        "the socket still answers"
    );
    assert!(!victim.closed(Duration::ZERO).await, "nothing changed");

    // An admin may not block a staff member (`desk_rule.rs` has the whole rule) ...
    let staff = registered(&node, "a2", Role::Admin, 1).await;
    let (status, body) = act(
        &node,
        "a1",
        Role::Admin,
        "a2",
        "disconnect",
        json!({ "blockSecs": 60 }),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("FORBIDDEN")));
    Sio::connect(node.port, Some(&node.token("a2", Role::Admin)))
        .await
        .expect("staff still connect");
    // ... nor may an admin act on themself; a superadmin does.
    let (status, _) = act(&node, "a2", Role::Admin, "a2", "disconnect", json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = act(
        &node,
        "s1",
        Role::Superadmin,
        "a2",
        "disconnect",
        json!({ "blockSecs": 60 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(staff.closed(WAIT).await, "a superadmin removes staff");
    let message = refused(node.port, json!({ "token": node.token("a2", Role::Admin) })).await;
    assert!(message.starts_with("FORBIDDEN"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_is_refused_on_a_live_socket_a_recovering_one_and_rest() {
    // Arrange: one live socket and one dropped (recoverable) session of the same user.
    let node = TestNode::start().await;
    let old = node.token("u3", Role::User);
    let live = Sio::connect(node.port, Some(&old)).await.expect("connects");
    let dropped = Sio::connect(node.port, Some(&old)).await.expect("connects");
    let pid = dropped.pid.clone().expect("pid");
    assert!(
        eventually(WAIT, || async {
            node.user_status("u3").await["sockets"] == 2
        })
        .await
    );
    dropped.cut();
    assert!(
        eventually(WAIT, || async {
            node.user_status("u3").await["sockets"] == 1
        })
        .await
    );

    // Act.
    let (status, body) = act(&node, "a1", Role::Admin, "u3", "revoke-tokens", json!({})).await;

    // Assert: the live socket is closed, the old token refused everywhere.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userId"], "u3");
    assert!(body["revokedBefore"].is_string(), "{body}");
    assert!(live.closed(WAIT).await, "the live socket is closed");
    let message = refused(node.port, json!({ "token": old, "pid": pid })).await;
    assert!(message.starts_with("UNAUTHORIZED"), "{message}");
    let (status, _) = node.call(Method::GET, "/api/chats", Some(&old), None).await;
    assert_eq!(status, 401);
    // A token issued after the revocation works, but does not resurrect the dropped session.
    // (Revocation counts whole seconds: the token must be issued in a later one.)
    let back = std::sync::Mutex::new(None);
    let connected = eventually(LONG, || async {
        let token = node.token("u3", Role::User);
        let auth = json!({ "token": token, "pid": pid });
        let socket = Sio::connect_with(node.port, Some(auth)).await.ok();
        let ok = socket.is_some();
        *back.lock().unwrap() = socket;
        ok
    })
    .await;
    assert!(connected, "a fresh token never connected");
    let back = back.into_inner().unwrap().expect("connected");
    assert_ne!(
        back.pid.as_deref(),
        Some(pid.as_str()),
        "a new session, not the removed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnect_discards_the_recovery_sessions_so_a_resume_starts_a_new_one() {
    let node = TestNode::start().await;
    let token = node.token("u4", Role::User);
    let dropped = Sio::connect(node.port, Some(&token))
        .await
        .expect("connects");
    let pid = dropped.pid.clone().expect("pid");
    // Registered first (so the cut below is the session's drop, not a race with its start).
    assert!(
        eventually(WAIT, || async {
            node.user_status("u4").await["sockets"] == 1
        })
        .await
    );
    dropped.cut();
    assert!(
        eventually(WAIT, || async {
            node.user_status("u4").await["sockets"] == 0
        })
        .await
    );

    let (status, body) = act(&node, "a1", Role::Admin, "u4", "disconnect", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("blockedUntil").is_none(), "no block: {body}");

    let back = Sio::connect_with(node.port, Some(json!({ "token": token, "pid": pid })))
        .await
        .expect("no block: the user may come back");
    assert_ne!(
        back.pid.as_deref(),
        Some(pid.as_str()),
        "the removed session is not resumed"
    );
    // A session opened after the removal is resumable as usual.
    let new_pid = back.pid.clone().expect("pid");
    assert!(
        eventually(WAIT, || async {
            node.user_status("u4").await["sockets"] == 1
        })
        .await
    );
    back.cut();
    assert!(
        eventually(WAIT, || async {
            node.user_status("u4").await["sockets"] == 0
        })
        .await
    );
    let again = Sio::connect_with(node.port, Some(json!({ "token": token, "pid": new_pid })))
        .await
        .expect("resumes");
    assert_eq!(again.pid.as_deref(), Some(new_pid.as_str()), "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_user_is_disconnected_and_refused_on_every_node_of_a_cluster() {
    // Arrange: three nodes on one Redis and one store; the user has a socket on each.
    let cluster = Cluster::build(Topology::Single)
        .named(&["desk-a", "desk-b", "desk-c"])
        .start()
        .await;
    let nodes = &cluster.nodes;
    let token = nodes[0].token("u5", Role::User);
    let mut sockets = Vec::new();
    for node in nodes {
        sockets.push(
            Sio::connect(node.port, Some(&token))
                .await
                .expect("connects"),
        );
    }
    assert!(
        eventually(LONG, || async {
            nodes[2].user_status("u5").await["sockets"] == 3
        })
        .await
    );

    // Act: an admin on the second node blocks them.
    let (status, body) = act(
        &nodes[1],
        "a1",
        Role::Admin,
        "u5",
        "disconnect",
        json!({ "blockSecs": 600 }),
    )
    .await;

    // Assert: every socket closed, every node refuses the handshake and REST.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sockets"], 3);
    for s in &sockets {
        assert!(s.closed(LONG).await, "socket on every node closed");
    }
    for node in nodes {
        let message = refused(node.port, json!({ "token": token })).await;
        assert!(message.starts_with("FORBIDDEN: blocked"), "{message}");
        let (status, _) = node
            .call(Method::GET, "/api/chats", Some(&token), None)
            .await;
        assert_eq!(status, 403);
    }
    cluster.stop().await;
}

/// The removal records' rules, on one store.
async fn removals_keep_the_latest_change(store: &dyn DeskStore) {
    assert_eq!(store.removal("r1").await.unwrap(), None);
    assert_eq!(
        store
            .change_removal("r1", RemovalChange::Unblock)
            .await
            .unwrap(),
        None,
        "nothing to unblock"
    );
    let t0 = now();
    let later = t0 + chrono::Duration::seconds(60);
    let blocked = store
        .change_removal(
            "r1",
            RemovalChange::Disconnect {
                at: t0,
                blocked_until: Some(later),
                by_superadmin: false,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            blocked.blocked_until,
            blocked.removed_at,
            blocked.by_superadmin
        ),
        (Some(later), t0, false)
    );
    // A disconnect without a block keeps the block; an earlier one does not move removedAt back.
    let earlier = t0 - chrono::Duration::seconds(5);
    let kept = store
        .change_removal(
            "r1",
            RemovalChange::Disconnect {
                at: earlier,
                blocked_until: None,
                by_superadmin: true,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.blocked_until, kept.removed_at, kept.by_superadmin),
        (Some(later), t0, true)
    );
    // Revocations: the later wins, whatever the order they land in.
    for before in [later, t0] {
        store
            .change_removal(
                "r1",
                RemovalChange::Revoke {
                    at: t0,
                    before,
                    by_superadmin: false,
                },
            )
            .await
            .unwrap();
    }
    let read = store.removal("r1").await.unwrap().unwrap();
    assert_eq!(
        (read.revoked_before, read.by_superadmin),
        (Some(later), true)
    );
    let unblocked = store
        .change_removal("r1", RemovalChange::Unblock)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (unblocked.blocked_until, unblocked.revoked_before),
        (None, Some(later))
    );
}

#[tokio::test]
async fn removal_records_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    removals_keep_the_latest_change(&store).await;
    // And after a restart on the same directory.
    drop(store);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert!(reopened.removal("r1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_records_on_mongodb() {
    let server = tokio::task::block_in_place(MongoServer::start);
    let store = server.store("desk_removals").await;
    removals_keep_the_latest_change(&store).await;
}
