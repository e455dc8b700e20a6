//! Webhooks (PROTOCOL.md, "Webhooks (Standard Webhooks)") against a real receiver that verifies
//! every request with the official `standardwebhooks` library: every event type, a receiver
//! that fails, times out or is down, an operator's re-send, `chat.unread`'s rules, a message
//! saved but never emitted, several endpoints (MongoDB: `webhooks_mongo.rs`; the cluster:
//! `webhooks_cluster.rs`).

use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::webhooks::{
    NEW_SECRET, Receiver, SECRET, WITHIN, all_created_in_order, count, delivered_despite,
    every_kind_arrives, hooked, raise_priority, report_read_by_u1, retries,
};
use crate::helpers::{TestNode, eventually, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_signed_and_verified_by_the_official_library() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| hooked(c, &rx, 1)).await;
    let user = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let chat = node.staff_chat("a1", "u1").await;
    let admin_token = node.token("a1", Role::Admin);
    raise_priority(&node, &admin_token, &chat).await;
    let m = send(&user, &chat, "hello").await;
    let read = admin
        .ack(
            "message:read",
            json!({ "chatId": chat, "messageId": m["id"] }),
        )
        .await;
    assert_eq!(read["ok"], true, "{read}");
    send(&admin, &chat, "a reply the user leaves unread").await;
    let report = report_read_by_u1(&node, &admin_token, &user).await;
    // The reminder first: it names the user as online.
    let got = rx.until(WITHIN, |g| count(g, "chat.unread") >= 1).await;
    assert_eq!(count(&got, "chat.unread"), 1, "{got:#?}");
    user.close();

    let all = [
        "message.created",
        "message.delivered",
        "message.read",
        "chat.created",
        "chat.updated",
        "chat.unread",
        "report.created",
        "report.read",
        "user.online",
        "user.offline",
    ];
    let got = every_kind_arrives(&rx, &all).await;
    assert!(got.iter().all(|r| r["valid"] == true), "{got:#?}");
    let find = |kind: &str| got.iter().find(|r| r["type"] == kind).unwrap().clone();
    assert_eq!(find("message.created")["data"]["message"]["id"], m["id"]);
    assert_eq!(
        find("message.created")["id"],
        format!("msg_{}", m["id"].as_str().unwrap())
    );
    assert_eq!(find("chat.created")["data"]["chat"]["id"], chat.as_str());
    assert_eq!(find("chat.updated")["data"]["changed"], json!(["priority"]));
    assert_eq!(find("report.created")["data"]["report"]["id"], report["id"]);
    let unread = find("chat.unread")["data"].clone();
    assert_eq!(unread["side"], "user");
    assert_eq!(unread["recipients"], json!(["u1"]));
    assert_eq!(unread["unreadCount"], 1);
    assert_eq!(unread["recipientOnline"], true);
    assert_eq!(
        unread["messages"][0]["content"],
        "a reply the user leaves unread"
    );
    let online = got
        .iter()
        .find(|r| r["type"] == "user.online" && r["data"]["userId"] == "a1")
        .expect("a1's user.online");
    assert_eq!(online["data"]["role"], "admin");
    let offline = got
        .iter()
        .filter(|r| r["type"] == "user.offline" && r["data"]["userId"] == "u1")
        .count();
    assert_eq!(offline, 1, "user.offline once: {got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_signs_with_both_secrets_and_an_old_receiver_still_verifies() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.secret = Some(format!("{NEW_SECRET} {SECRET}").into());
        c.webhooks.events = "message.created".into();
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    send(&user, &chat, "rotated").await;
    let got = rx.until(WITHIN, |g| count(g, "message.created") == 1).await;
    assert_eq!(count(&got, "message.created"), 1, "{got:#?}");
    assert_eq!(got[0]["signatures"], 2);
    assert_eq!(got[0]["valid"], true);
    // The filter: nothing but message.created (no chat.created, no user.online).
    assert!(
        got.iter().all(|r| r["type"] == "message.created"),
        "{got:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_500_gets_every_event_in_order_once_it_recovers() {
    let rx = Receiver::start(SECRET).await;
    rx.mode("fail", 0).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created".into();
    })
    .await;
    delivered_despite(&node, &rx, "fail", 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_timing_out_gets_every_event_in_order_once_it_answers() {
    let rx = Receiver::start(SECRET).await;
    rx.mode("slow", 5).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.timeout_secs = 1;
        c.webhooks.events = "message.created".into();
    })
    .await;
    delivered_despite(&node, &rx, "slow", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_s_gets_every_event_in_order_once_it_is_up() {
    const OUTAGE: std::time::Duration = std::time::Duration::from_secs(30);
    let mut rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        // The backoff grows past a few attempts (1, 2, 4, 8 s): the outage is waited out, not
        // hammered.
        c.webhooks.max_backoff_secs = 8;
        c.webhooks.events = "message.created".into();
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;

    rx.down();
    let down_at = tokio::time::Instant::now();
    // Messages keep coming through the outage, each once the sender has failed a few more
    // times (its counter, not a clock).
    let mut sent = Vec::new();
    for (i, failed) in [0, 2, 4, 5].into_iter().enumerate() {
        assert!(
            eventually(WITHIN, || async { retries(&node) >= failed }).await,
            "{failed} failed attempts: {}",
            retries(&node)
        );
        sent.push(send(&user, &chat, &format!("m{i}")).await);
    }
    // The outage itself.
    tokio::time::sleep_until(down_at + OUTAGE).await;
    let during = retries(&node);
    assert!(
        (5..=20).contains(&during),
        "retried with backoff through the outage: {during} attempts"
    );
    rx.up().await;

    let got = all_created_in_order(&rx, &sent).await;
    assert!(got.iter().all(|r| r["valid"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_failing_past_its_retry_time_is_kept_and_a_superadmin_resends_it() {
    let rx = Receiver::start(SECRET).await;
    rx.mode("fail", 0).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.retry_for_secs = 2;
        c.webhooks.events = "message.created".into();
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    let m = send(&user, &chat, "kept").await;
    let id = format!("msg_{}", m["id"].as_str().unwrap());
    let root = node.token("root", Role::Superadmin);
    let listed = eventually(WITHIN, || async {
        let (_, body) = node
            .call(
                reqwest::Method::GET,
                "/api/webhooks/failed",
                Some(&root),
                None,
            )
            .await;
        body["failed"][0]["id"] == id.as_str()
    })
    .await;
    assert!(listed, "the failed event is listed");
    assert!(
        node.state
            .metrics
            .webhooks
            .outcome("default", "failed")
            .get()
            >= 1
    );

    let admin = node.token("a1", Role::Admin);
    let (status, _) = node
        .call(
            reqwest::Method::POST,
            "/api/webhooks/resend",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 403, "only a superadmin resends");
    let (status, body) = node
        .call(
            reqwest::Method::POST,
            "/api/webhooks/resend",
            Some(&root),
            Some(json!({ "endpoint": "nope" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION"))
    );

    rx.mode("ok", 0).await;
    let (status, body) = node
        .call(
            reqwest::Method::POST,
            "/api/webhooks/resend",
            Some(&root),
            Some(json!({ "ids": [id] })),
        )
        .await;
    assert_eq!((status, body["resent"].as_u64()), (200, Some(1)), "{body}");
    // A resend goes out at once: not after the sender's memory of the failed attempts (30 s).
    let got = rx
        .until(std::time::Duration::from_secs(10), |g| {
            count(g, "message.created") >= 1
        })
        .await;
    assert_eq!(count(&got, "message.created"), 1, "{got:#?}");
    // The outcome is written after the receiver answered: wait for it, not for a fixed time.
    let emptied = eventually(WITHIN, || async {
        let (_, body) = node
            .call(
                reqwest::Method::GET,
                "/api/webhooks/failed",
                Some(&root),
                None,
            )
            .await;
        body["failed"] == json!([])
    })
    .await;
    assert!(
        emptied,
        "the resent event leaves the failed list once delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_unread_fires_once_per_burst_not_when_read_in_time_and_again_after_a_read() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 2);
        c.webhooks.events = "chat.unread".into();
    })
    .await;
    let user = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let burst = node.staff_chat("a1", "u1").await;
    let read_in_time = node.staff_chat("a1", "u1").await;
    // A burst of three, never read.
    for i in 0..3 {
        send(&admin, &burst, &format!("b{i}")).await;
    }
    // Read at once: no reminder.
    let m = send(&admin, &read_in_time, "read at once").await;
    let ack = user
        .ack(
            "message:read",
            json!({ "chatId": read_in_time, "messageId": m["id"] }),
        )
        .await;
    assert_eq!(ack["ok"], true);

    let got = rx.until(WITHIN, |g| count(g, "chat.unread") >= 1).await;
    let first: Vec<&Value> = got.iter().filter(|r| r["type"] == "chat.unread").collect();
    assert_eq!(first.len(), 1, "{got:#?}");
    assert_eq!(first[0]["data"]["chatId"], burst.as_str());
    assert_eq!(first[0]["data"]["unreadCount"], 3);
    assert_eq!(first[0]["data"]["messages"].as_array().unwrap().len(), 3);

    // The user reads the burst; a new message then stays unread: a second reminder, naming it.
    let last = send(&admin, &burst, "after the reminder").await;
    let ack = user
        .ack(
            "message:read",
            json!({ "chatId": burst, "messageId": last["id"] }),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let again = send(&admin, &burst, "new and unread").await;
    let got = rx.until(WITHIN, |g| count(g, "chat.unread") >= 2).await;
    let reminders: Vec<&Value> = got.iter().filter(|r| r["type"] == "chat.unread").collect();
    assert_eq!(reminders.len(), 2, "{got:#?}");
    assert_eq!(reminders[1]["data"]["chatId"], burst.as_str());
    assert_eq!(reminders[1]["data"]["messages"][0]["id"], again["id"]);
    assert_eq!(reminders[1]["data"]["unreadCount"], 1);
    assert_ne!(reminders[0]["id"], reminders[1]["id"]);
    // The chat read in time never got one (its look was due long before the second reminder).
    assert!(
        reminders
            .iter()
            .all(|r| r["data"]["chatId"] == burst.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_saved_but_never_emitted_is_still_reported() {
    use switchboard::domain::{AuthUser, ChatId, MessageBody, MessageType, NewMessage, Saved};
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created".into();
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    // Saved straight through the store: what a node that died right after its save leaves.
    let saved = node
        .state
        .store
        .save_message(NewMessage {
            id: switchboard::domain::MessageId::generate(),
            chat_id: ChatId::parse(&chat).unwrap(),
            sender: AuthUser {
                id: "u1".into(),
                name: "u1".into(),
                role: Role::User,
            },
            body: MessageBody {
                content: "saved, never emitted".into(),
                kind: MessageType::Text,
                file_url: None,
                file_name: None,
            },
            client_message_id: None,
            delivered: false,
        })
        .await
        .unwrap();
    let Saved::Created(m) = saved else {
        panic!("a new message")
    };
    let got = rx.until(WITHIN, |g| count(g, "message.created") >= 1).await;
    assert_eq!(count(&got, "message.created"), 1, "{got:#?}");
    assert_eq!(got[0]["id"], format!("msg_{}", m.id.as_str()));
    assert_eq!(got[0]["data"]["message"]["content"], "saved, never emitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_from_the_file_get_their_own_events_and_a_stuck_one_delays_no_other() {
    let stuck = Receiver::start(SECRET).await;
    stuck.mode("slow", 60).await;
    let fine = Receiver::start(NEW_SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhooks.json");
    let endpoints = json!({ "endpoints": [
        { "name": "stuck", "url": stuck.url(), "secrets": [SECRET] },
        { "name": "fine", "url": fine.url(), "secrets": [NEW_SECRET],
          "events": ["message.created", "report.created"] },
    ] });
    std::fs::write(&file, endpoints.to_string()).unwrap();
    let node = TestNode::start_with(|c| {
        c.webhooks.file = Some(file.clone());
        c.webhooks.timeout_secs = 30;
        c.webhooks.unread_reminder_secs = 0;
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    for i in 0..5 {
        send(&user, &chat, &format!("m{i}")).await;
    }
    // The stuck endpoint holds its first event of the chat (chat.created) for 60 s; the other
    // gets all five messages meanwhile, and only the types it asked for.
    let got = fine
        .until(WITHIN, |g| count(g, "message.created") >= 5)
        .await;
    assert_eq!(count(&got, "message.created"), 5, "{got:#?}");
    assert!(
        got.iter()
            .all(|r| r["type"] == "message.created" && r["valid"] == true)
    );
    let held = stuck.received().await;
    assert!(
        held.iter().all(|r| r["type"] != "message.created"),
        "the stuck endpoint is still on the chat's first event: {held:#?}"
    );
    assert!(
        held.iter().any(|r| r["type"] == "chat.created"),
        "{held:#?}"
    );
}
