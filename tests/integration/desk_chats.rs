//! The support desk's live chat list (PROTOCOL.md, "The support desk"): `chat:created` and
//! `chat:updated` over real sockets, recoverable, and the `updatedAfter` catch-up.

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::quiet::no_more;
use crate::helpers::{Cluster, Sio, TestNode, Topology, WAIT, eventually};

/// `PATCH /api/chats/{chat}` as admin `a1`: the chat answered (asserts `200`).
pub(crate) async fn patch(node: &TestNode, chat: &str, body: Value) -> Value {
    let token = node.token("a1", Role::Admin);
    let (status, chat) = node
        .call(
            Method::PATCH,
            &format!("/api/chats/{chat}"),
            Some(&token),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{chat}");
    chat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opening_and_changing_a_chat_reach_its_participants_and_admins_only() {
    // Arrange: the chat's user, an admin, and another user who must hear nothing.
    let node = TestNode::start().await;
    let user = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let stranger = node.socket("u2", Role::User).await;

    // Act: the user opens a chat.
    let chat = node.open_chat(&node.token("u1", Role::User)).await;

    // Assert: chat:created to the user and admins, with its recovery offset.
    for s in [&user, &admin] {
        let created = s.event("chat:created").await;
        assert_eq!(created["chat"]["id"], chat.as_str());
        assert_eq!(created["chat"]["status"], "open");
    }
    assert!(user.last_offset().is_some(), "chat:created is recoverable");

    // Act: staff raise its priority and assign a second admin.
    let a2 = node.socket("a2", Role::Admin).await;
    patch(
        &node,
        &chat,
        json!({ "priority": "high", "assignedAdmin": "a2" }),
    )
    .await;

    // Assert: one chat:updated naming what changed and who changed it.
    for s in [&user, &admin, &a2] {
        let updated = s.event("chat:updated").await;
        assert_eq!(updated["chat"]["id"], chat.as_str());
        assert_eq!(updated["by"], "a1");
        assert_eq!(
            updated["changed"],
            json!(["priority", "assignedAdmin", "participants"])
        );
        assert_eq!(updated["chat"]["priority"], "high");
    }
    // A patch that changes nothing says nothing; the stranger heard nothing at all. (A
    // change is announced before the PATCH answers; the witness follows anything emitted.)
    patch(&node, &chat, json!({ "priority": "high" })).await;
    let nodes = [&node];
    no_more(
        &admin,
        "a1",
        "chat:updated",
        &nodes,
        "a patch that changed nothing",
    )
    .await;
    no_more(&stranger, "u2", "chat:created", &nodes, "the stranger").await;
    assert!(stranger.drain("chat:updated").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_console_that_dropped_gets_the_chat_updates_it_missed_on_recovery() {
    let node = TestNode::start().await;
    let token = node.token("u3", Role::User);
    let user = Sio::connect(node.port, Some(&token))
        .await
        .expect("connects");
    let pid = user.pid.clone().expect("pid");
    let chat = node.open_chat(&token).await;
    user.event("chat:created").await;
    let offset = user.last_offset().expect("offset");
    user.cut();
    assert!(
        eventually(WAIT, || async {
            node.user_status("u3").await["sockets"] == 0
        })
        .await
    );

    patch(&node, &chat, json!({ "status": "closed" })).await;

    let back = Sio::connect_with(
        node.port,
        Some(json!({ "token": token, "pid": pid, "offset": offset })),
    )
    .await
    .expect("resumes");
    assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "recovered");
    let missed = back.event("chat:updated").await;
    assert_eq!(missed["changed"], json!(["status"]));
    assert_eq!(missed["chat"]["status"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updated_after_lists_the_changes_since_an_instant_oldest_first_page_by_page() {
    // Arrange: three chats; then, after an instant, the first and the third change.
    let node = TestNode::start().await;
    let token = node.token("u4", Role::User);
    let mut chats = Vec::new();
    for _ in 0..3 {
        chats.push(node.open_chat(&token).await);
    }
    let listed = |path: String| {
        let node = &node;
        let token = token.clone();
        async move {
            let (status, body) = node.call(Method::GET, &path, Some(&token), None).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let all = listed("/api/chats".into()).await;
    let newest = all["chats"][0]["updatedAt"].as_str().unwrap().to_owned();
    // The next changes must be later than `newest` (millisecond timestamps).
    let newest_at = chrono::DateTime::parse_from_rfc3339(&newest).unwrap();
    while chrono::Utc::now() <= newest_at {
        tokio::task::yield_now().await;
    }
    let changed = patch(&node, &chats[2], json!({ "priority": "low" })).await;
    // (Ties are ordered by id: the second change must come a millisecond later.)
    let changed_at =
        chrono::DateTime::parse_from_rfc3339(changed["updatedAt"].as_str().unwrap()).unwrap();
    while chrono::Utc::now() <= changed_at {
        tokio::task::yield_now().await;
    }
    patch(&node, &chats[0], json!({ "priority": "high" })).await;

    // Act: page through the changes after `newest`, one at a time.
    let since = urlencode(&newest);
    let first = listed(format!("/api/chats?updatedAfter={since}&limit=1")).await;
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = listed(format!(
        "/api/chats?updatedAfter={since}&limit=1&cursor={cursor}"
    ))
    .await;

    // Assert: oldest change first, nothing unchanged, and the end.
    assert_eq!(first["chats"][0]["id"], chats[2].as_str());
    assert_eq!(second["chats"][0]["id"], chats[0].as_str());
    assert_eq!(second["chats"].as_array().unwrap().len(), 1);
    assert!(second["nextCursor"].is_null(), "{second}");
    let (status, body) = node
        .call(
            Method::GET,
            "/api/chats?updatedAfter=yesterday",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("VALIDATION"))
    );
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

/// The ascending chat list on one store: after `(updatedAt, id)`, oldest change first.
async fn ascending_lists_follow_changes(store: &dyn switchboard::store::Store) {
    use switchboard::domain::{ChatCursor, ChatId, ChatPatch, ChatQuery, NewChat, Priority};
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        let chat = store
            .create_chat(NewChat {
                id: ChatId::generate(),
                participants: vec!["u1".into()],
                title: title.into(),
                priority: Priority::Medium,
                assigned_admin: None,
                queued: false,
            })
            .await
            .unwrap();
        ids.push(chat);
    }
    let mark = ids.iter().map(|c| c.updated_at).max().unwrap();
    while switchboard::domain::now() <= mark {
        tokio::task::yield_now().await;
    }
    let patch = ChatPatch {
        priority: Some(Priority::High),
        ..Default::default()
    };
    let first = store.update_chat(&ids[1].id, patch.clone()).await.unwrap();
    // (Ties are ordered by id: the second change must come a millisecond later.)
    while switchboard::domain::now() <= first.updated_at {
        tokio::task::yield_now().await;
    }
    store.update_chat(&ids[0].id, patch).await.unwrap();
    let q = |after| ChatQuery {
        participant: Some("u1".into()),
        status: None,
        limit: 10,
        after,
        ascending: true,
        reader: "u1".into(),
    };
    let since = ChatCursor {
        updated_at: mark,
        id: ChatId::from_trusted("ffffffffffffffffffffffff".into()),
    };
    let changed = store.list_chats(&q(Some(since))).await.unwrap();
    let order: Vec<_> = changed.iter().map(|c| c.chat.id.clone()).collect();
    assert_eq!(order, [ids[1].id.clone(), ids[0].id.clone()]);
    let after_first = ChatCursor {
        updated_at: changed[0].chat.updated_at,
        id: changed[0].chat.id.clone(),
    };
    let rest = store.list_chats(&q(Some(after_first))).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].chat.id, ids[0].id);
}

#[tokio::test]
async fn ascending_chat_lists_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = switchboard::store::EmbeddedStore::open(dir.path()).unwrap();
    ascending_lists_follow_changes(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ascending_chat_lists_on_mongodb() {
    let server = tokio::task::block_in_place(crate::helpers::mongo::MongoServer::start);
    let store = server.store("desk_chat_lists").await;
    ascending_lists_follow_changes(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_events_reach_admins_on_another_node() {
    let cluster = Cluster::build(Topology::Single)
        .named(&["chats-a", "chats-b"])
        .start()
        .await;
    let [a, b] = cluster.nodes();
    let admin = b.socket("a1", Role::Admin).await;

    let chat = a.open_chat(&a.token("u5", Role::User)).await;
    assert_eq!(
        admin.event("chat:created").await["chat"]["id"],
        chat.as_str()
    );
    patch(a, &chat, json!({ "status": "closed" })).await;
    let updated = admin.event("chat:updated").await;
    assert_eq!(
        (&updated["chat"]["id"], &updated["changed"]),
        (&json!(chat), &json!(["status"]))
    );
    cluster.stop().await;
}

/// Assigning another admin replaces the previous one in `participants` (the user stays).
async fn reassignment_replaces_the_admin(store: &dyn switchboard::store::Store) {
    use switchboard::domain::{ChatId, ChatPatch, NewChat, Priority};
    let chat = store
        .create_chat(NewChat {
            id: ChatId::generate(),
            participants: vec!["u1".into(), "a1".into()],
            title: "t".into(),
            priority: Priority::Medium,
            assigned_admin: Some("a1".into()),
            queued: false,
        })
        .await
        .unwrap();
    let assign = |a: &str| ChatPatch {
        assigned_admin: Some(a.into()),
        ..Default::default()
    };
    let moved = store.update_chat(&chat.id, assign("a2")).await.unwrap();
    assert_eq!(moved.participants, ["u1", "a2"]);
    assert_eq!(moved.assigned_admin.as_deref(), Some("a2"));
    let same = store.update_chat(&chat.id, assign("a2")).await.unwrap();
    assert_eq!(same.participants, ["u1", "a2"]);
}

#[tokio::test]
async fn reassignment_replaces_the_admin_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = switchboard::store::EmbeddedStore::open(dir.path()).unwrap();
    reassignment_replaces_the_admin(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_replaces_the_admin_on_mongodb() {
    let server = tokio::task::block_in_place(crate::helpers::mongo::MongoServer::start);
    let store = server.store("desk_reassign").await;
    reassignment_replaces_the_admin(&store).await;
}
