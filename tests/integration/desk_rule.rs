//! "Staff may do this to users, only superadmins to staff" (PROTOCOL.md, "The support desk"):
//! an admin's disconnect, block, unblock or revocation of a staff member is refused `403
//! FORBIDDEN` and changes nothing, whether the staff member was seen at a handshake or only in
//! a REST call, on this node or another, on both stores; a superadmin's goes through.

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::desk::{act, registered};
use crate::helpers::mongo::{TEST_TIMEOUT, fresh_database, shared};
use crate::helpers::{Cluster, Sio, TestNode, Topology, WAIT, eventually};

/// Every removal an admin can try on `target`: each must be `403 FORBIDDEN`.
async fn every_removal_is_forbidden(node: &TestNode, admin: &str, target: &str) {
    for (action, body) in [
        ("disconnect", json!({})),
        ("disconnect", json!({ "blockSecs": 60, "reason": "test" })),
        ("revoke-tokens", json!({})),
    ] {
        let (status, body) = act(node, admin, Role::Admin, target, action, body).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("FORBIDDEN")),
            "{action} of {target}: {body}"
        );
    }
    let token = node.token(admin, Role::Admin);
    let (status, body) = node
        .call(
            Method::DELETE,
            &format!("/api/users/{target}/block"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 403, "unblock of {target}: {body}");
}

/// Asserts that `target` has no removal record and that `socket` still answers.
async fn nothing_changed(node: &TestNode, target: &str, socket: Option<&Sio>) {
    assert_eq!(
        node.state.store.removal(target).await.unwrap(),
        None,
        "no removal of {target} was recorded"
    );
    if let Some(socket) = socket {
        let ack = socket.ack("user:online", json!({ "userId": target })).await;
        assert_eq!(ack["ok"], true, "{target}'s socket still answers: {ack}");
    }
}

/// `GET /api/chats` as `id` (the REST call that makes the node see its token).
async fn rest_call(node: &TestNode, id: &str, role: Role) {
    let token = node.token(id, role);
    let (status, body): (u16, Value) = node
        .call(Method::GET, "/api/chats", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_may_not_remove_staff_seen_at_a_handshake_or_in_a_rest_call_but_a_superadmin_may()
{
    // Arrange: staff member a2 with a socket, a3 only ever seen in a REST call, a
    // superadmin s2 with a socket, and a user u1.
    let node = TestNode::start().await;
    let a2 = registered(&node, "a2", Role::Admin, 1).await;
    rest_call(&node, "a3", Role::Admin).await;
    let s2 = registered(&node, "s2", Role::Superadmin, 1).await;
    let u1 = registered(&node, "u1", Role::User, 1).await;

    // Act and assert: an admin is refused on every staff member, and nothing changes.
    for target in ["a2", "a3", "s2"] {
        every_removal_is_forbidden(&node, "a1", target).await;
    }
    nothing_changed(&node, "a2", Some(&a2)).await;
    nothing_changed(&node, "a3", None).await;
    nothing_changed(&node, "s2", Some(&s2)).await;
    Sio::connect(node.port, Some(&node.token("a2", Role::Admin)))
        .await
        .expect("a2 still connects");

    // An admin still removes a user; a superadmin removes staff.
    let (status, body) = act(&node, "a1", Role::Admin, "u1", "disconnect", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(u1.closed(WAIT).await, "the user's socket is closed");
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
    assert!(a2.closed(WAIT).await, "a superadmin removes staff");
    let (status, body) = act(
        &node,
        "s1",
        Role::Superadmin,
        "a3",
        "revoke-tokens",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_on_one_node_may_not_remove_staff_seen_on_another() {
    // Arrange: three nodes on one Redis and one store; staff member a2 connects to the first.
    let cluster = Cluster::build(Topology::Single)
        .named(&["rule-a", "rule-b", "rule-c"])
        .start()
        .await;
    let nodes = &cluster.nodes;
    let a2 = registered(&nodes[0], "a2", Role::Admin, 1).await;

    // Act and assert: an admin on the third node is refused; nothing changes anywhere.
    every_removal_is_forbidden(&nodes[2], "a1", "a2").await;
    nothing_changed(&nodes[1], "a2", Some(&a2)).await;

    // A superadmin on the second node removes them, and the first node's audit log says so.
    let (status, body) = act(
        &nodes[1],
        "s1",
        Role::Superadmin,
        "a2",
        "disconnect",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(a2.closed(WAIT).await, "closed from another node");
    let superadmin = nodes[0].token("s9", Role::Superadmin);
    let (status, body) = nodes[0]
        .call(Method::GET, "/api/audit?target=a2", Some(&superadmin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only the superadmin's removal: {body}");
    assert_eq!(entries[0]["action"], "user.disconnect");
    assert_eq!(
        entries[0]["actor"],
        json!({ "id": "s1", "role": "superadmin" })
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_mongodb_an_admin_may_not_remove_staff_and_a_user_directory_survives_a_restart() {
    // Arrange: a node on MongoDB sees staff member a2 in a REST call, then restarts.
    let server = tokio::task::block_in_place(shared);
    let (uri, database) = (server.uri(), fresh_database());
    let on_mongo = |c: &mut switchboard::Config| {
        c.mongodb_uri = Some(uri.clone().into());
        c.mongodb_database = database.clone();
        c.mongodb_timeout = TEST_TIMEOUT;
    };
    let first = TestNode::start_with(on_mongo).await;
    rest_call(&first, "a2", Role::Admin).await;
    first.stop().await;
    let node = TestNode::start_with(on_mongo).await;

    // Act and assert: the new node, which never saw a2, refuses an admin.
    every_removal_is_forbidden(&node, "a1", "a2").await;
    nothing_changed(&node, "a2", None).await;
    // A user is still removable, and the directory holds both roles.
    rest_call(&node, "u1", Role::User).await;
    let (status, body) = act(&node, "a1", Role::Admin, "u1", "revoke-tokens", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(WAIT, || async {
            node.state
                .store
                .known_user("a2")
                .await
                .unwrap()
                .map(|u| u.role)
                == Some(Role::Admin)
        })
        .await
    );
}
