//! The audit log (PROTOCOL.md, "The support desk"): staff actions recorded over real REST and
//! sockets and listed by `GET /api/audit` (superadmins only, newest first, filtered, paged, bad
//! input refused); the store operations behind it and the user directory on both stores; and
//! retention (`AUDIT_RETENTION_DAYS`) applied by a node that starts on old entries.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::{
    Actor, AuditAction, AuditEntry, AuditQuery, AuditTarget, AuthUser, Role, new_object_id, now,
};
use switchboard::store::{AuditStore, EmbeddedStore, Store};

use crate::desk::act;
use crate::desk_chats::patch;
use crate::helpers::mongo::{fresh_database, shared};
use crate::helpers::{TestNode, WAIT, eventually};

/// `GET /api/audit{query}` as a superadmin: status and body.
async fn audit(node: &TestNode, query: &str) -> (u16, Value) {
    let token = node.token("root", Role::Superadmin);
    node.call(
        Method::GET,
        &format!("/api/audit{query}"),
        Some(&token),
        None,
    )
    .await
}

/// The actions of a page, in order.
fn actions(body: &Value) -> Vec<String> {
    body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {body}"))
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staff_actions_are_recorded_and_a_superadmin_pages_through_them_newest_first() {
    // Arrange: a user's chat.
    let node = TestNode::start().await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;

    // Act: every kind of staff action, in this order.
    patch(&node, &chat, json!({ "assignedAdmin": "a1" })).await;
    patch(&node, &chat, json!({ "assignedAdmin": "a2" })).await;
    patch(
        &node,
        &chat,
        json!({ "status": "closed", "priority": "high" }),
    )
    .await;
    let staff = node.socket("a1", Role::Admin).await;
    let sent = staff
        .ack(
            "sendReportMessage",
            json!({ "userId": "u1", "title": "Order", "message": "Shipped", "status": "Info" }),
        )
        .await;
    assert_eq!(sent["success"], true, "{sent}");
    for (action, body) in [
        ("disconnect", json!({ "reason": "spam" })),
        ("disconnect", json!({ "blockSecs": 60 })),
        ("revoke-tokens", json!({})),
    ] {
        let (status, body) = act(&node, "a1", Role::Admin, "u1", action, body).await;
        assert_eq!(status, 200, "{body}");
    }
    let token = node.token("a1", Role::Admin);
    let (status, _) = node
        .call(Method::DELETE, "/api/users/u1/block", Some(&token), None)
        .await;
    assert_eq!(status, 200);

    // Assert: newest first, with who, what and on what.
    let (status, body) = audit(&node, "").await;
    assert_eq!(status, 200, "{body}");
    let expected = [
        "user.unblock",
        "user.revoke-tokens",
        "user.block",
        "user.disconnect",
        "report.send",
        "chat.priority",
        "chat.status",
        "chat.reassign",
        "chat.assign",
    ];
    assert_eq!(actions(&body), expected, "{body}");
    assert_eq!(body["nextCursor"], Value::Null);
    let entries = body["entries"].as_array().unwrap();
    let reassign = &entries[7];
    assert_eq!(reassign["actor"], json!({ "id": "a1", "role": "admin" }));
    assert_eq!(reassign["target"], json!({ "type": "chat", "id": chat }));
    assert_eq!(reassign["details"], json!({ "from": "a1", "to": "a2" }));
    assert_eq!(
        entries[6]["details"],
        json!({ "from": "open", "to": "closed" })
    );
    assert_eq!(entries[4]["target"], json!({ "type": "user", "id": "u1" }));
    assert_eq!(entries[4]["details"]["title"], "Order");
    assert_eq!(entries[3]["details"]["reason"], "spam");
    assert_eq!(entries[2]["details"]["blockSecs"], 60);
    assert!(entries[1]["details"]["revokedBefore"].is_string(), "{body}");
    assert!(
        entries
            .iter()
            .all(|e| e["at"].is_string() && e["id"].is_string())
    );

    // Filters: by action, by actor, by target, together.
    let (_, body) = audit(&node, "?action=chat.status").await;
    assert_eq!(actions(&body), ["chat.status"]);
    let (_, body) = audit(&node, &format!("?target={chat}")).await;
    assert_eq!(actions(&body), &expected[5..]);
    let (_, body) = audit(&node, "?actor=a1&target=u1&action=user.block").await;
    assert_eq!(actions(&body), ["user.block"]);
    let (_, body) = audit(&node, "?actor=nobody").await;
    assert_eq!(actions(&body), Vec::<String>::new());

    // Pages of two go through everything once, in order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = audit(&node, &format!("?limit=2&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(actions(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_superadmins_read_the_audit_log_and_bad_parameters_are_refused_naming_them() {
    let node = TestNode::start().await;
    for role in [Role::User, Role::Admin] {
        let token = node.token("x1", role);
        let (status, body) = node
            .call(Method::GET, "/api/audit", Some(&token), None)
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("FORBIDDEN")),
            "{role:?}: {body}"
        );
    }
    let (status, _) = node.call(Method::GET, "/api/audit", None, None).await;
    assert_eq!(status, 401);
    for (query, names) in [
        ("?limit=0", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=abc", "limit"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?action=chat.delete", "action"),
        (&format!("?actor={}", "x".repeat(65)) as &str, "actor"),
        ("?target=%0A", "target"),
    ] {
        let (status, body) = audit(&node, query).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("VALIDATION")),
            "{query}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    // A limit above the maximum is clamped, as for every list.
    let (status, _) = audit(&node, "?limit=100000").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_deletes_audit_entries_older_than_the_retention_period_when_it_starts() {
    // Arrange: a data directory holding a 40-day-old entry and a 10-day-old one.
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let store = EmbeddedStore::open(data.path()).unwrap();
    let old = entry(40, "u-old", AuditAction::UserBlock);
    let recent = entry(10, "u-recent", AuditAction::UserRevoke);
    store.record_audit(&old).await.unwrap();
    store.record_audit(&recent).await.unwrap();
    drop(store);

    // Act: a node with a 30-day retention starts on it.
    let node = TestNode::start_in(data, |c| c.audit_retention_days = 30).await;

    // Assert: the old entry goes, the recent one stays.
    assert!(
        eventually(WAIT, || async {
            let (_, body) = audit(&node, "").await;
            body["entries"].as_array().is_some_and(|e| e.len() == 1)
        })
        .await,
        "the old entry is trimmed"
    );
    let (_, body) = audit(&node, "").await;
    assert_eq!(body["entries"][0]["id"], recent.id.as_str());
}

/// An entry `days_ago` days old, by admin `a1`, on user `target`.
fn entry(days_ago: i64, target: &str, action: AuditAction) -> AuditEntry {
    AuditEntry {
        id: new_object_id(),
        at: now() - chrono::Duration::days(days_ago),
        actor: Actor::of(&AuthUser {
            id: "a1".into(),
            name: "A".into(),
            role: Role::Admin,
        }),
        action,
        target: AuditTarget::user(target),
        details: json!({ "n": days_ago }),
    }
}

/// The audit log's and the user directory's store operations, on one store.
async fn audit_store_contract(store: &dyn Store) {
    // Five entries a minute apart, the oldest first; two by `system` on a chat.
    let t0 = now() - chrono::Duration::hours(1);
    let mut entries = Vec::new();
    for i in 0..5i64 {
        let mut e = entry(
            0,
            if i % 2 == 0 { "u1" } else { "u2" },
            AuditAction::UserBlock,
        );
        e.at = t0 + chrono::Duration::minutes(i);
        if i >= 3 {
            e.actor = Actor::system();
            e.action = AuditAction::ChatAssign;
            e.target = AuditTarget::chat("c1");
            e.details = json!({ "from": null, "to": "a1", "nested": { "list": [1, 2] } });
        }
        store.record_audit(&e).await.unwrap();
        entries.push(e);
    }
    let query = |limit| AuditQuery {
        actor: None,
        target: None,
        action: None,
        after: None,
        limit,
    };
    let all = store.audit_entries(&query(10)).await.unwrap();
    let newest_first: Vec<_> = entries.iter().rev().cloned().collect();
    assert_eq!(all, newest_first, "every field reads back, newest first");
    // Filters, alone and together.
    let by = |q: AuditQuery| async move {
        let found = store.audit_entries(&q).await.unwrap();
        found.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    let ids = |which: &[usize]| {
        which
            .iter()
            .map(|&i| entries[i].id.clone())
            .collect::<Vec<_>>()
    };
    let mut q = query(10);
    q.actor = Some("system".into());
    assert_eq!(by(q.clone()).await, ids(&[4, 3]));
    q.actor = None;
    q.target = Some("u1".into());
    assert_eq!(by(q.clone()).await, ids(&[2, 0]));
    q.action = Some(AuditAction::UserBlock);
    assert_eq!(by(q.clone()).await, ids(&[2, 0]));
    q.action = Some(AuditAction::UserRevoke);
    assert_eq!(by(q).await, Vec::<String>::new());
    // After a position: strictly older ones, also between two entries of the same instant.
    let mut q = query(2);
    q.after = Some((entries[3].at, entries[3].id.clone()));
    assert_eq!(by(q).await, ids(&[2, 1]));
    let mut twin = entry(0, "u9", AuditAction::UserUnblock);
    twin.at = entries[2].at;
    store.record_audit(&twin).await.unwrap();
    let (first, second) = if twin.id > entries[2].id {
        (twin.id.clone(), entries[2].id.clone())
    } else {
        (entries[2].id.clone(), twin.id.clone())
    };
    let mut q = query(10);
    q.after = Some((entries[2].at, first));
    let after_first = by(q).await;
    assert_eq!(
        after_first.first(),
        Some(&second),
        "the same instant pages by id"
    );
    assert_eq!(after_first.len(), 3);
    // Trimming deletes exactly the older ones.
    assert_eq!(store.trim_audit(entries[2].at).await.unwrap(), 2);
    let left: HashSet<String> = by(query(10)).await.into_iter().collect();
    assert_eq!(left.len(), 4);
    assert!(!left.contains(&entries[0].id) && !left.contains(&entries[1].id));

    // The user directory: the latest role and name win, `first_seen` stays.
    assert_eq!(store.known_user("d1").await.unwrap(), None);
    let user = |role| AuthUser {
        id: "d1".into(),
        name: format!("{role:?}"),
        role,
    };
    let other = AuthUser {
        id: "d2".into(),
        name: "D2".into(),
        role: Role::User,
    };
    store
        .see_users(&[user(Role::User), other], t0)
        .await
        .unwrap();
    let later = t0 + chrono::Duration::minutes(5);
    store.see_users(&[user(Role::Admin)], later).await.unwrap();
    let known = store.known_user("d1").await.unwrap().unwrap();
    assert_eq!(
        (
            known.role,
            known.name.as_str(),
            known.first_seen,
            known.last_seen
        ),
        (Role::Admin, "Admin", t0, later)
    );
    assert_eq!(
        store.known_user("d2").await.unwrap().unwrap().role,
        Role::User
    );
}

#[tokio::test]
async fn audit_log_and_user_directory_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    audit_store_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_and_user_directory_on_mongodb() {
    let server = tokio::task::block_in_place(shared);
    let store = server.store(&fresh_database()).await;
    audit_store_contract(&store).await;
}
