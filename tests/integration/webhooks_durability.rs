//! Webhooks when a node dies between a save and its emission, and while the outbox cannot be
//! written: the written-ahead events are in the outbox already, a message is re-derived from
//! the store at its own place in its chat, and the queue to the outbox stays within its bound
//! (issue #29; `src/webhooks/publisher.rs`).
//!
//! The death is the `kill_emissions` test hook: every emission stops exactly where a node
//! SIGKILLed after its save would, every time (a real kill lands there only now and then).

use serde_json::json;
use switchboard::domain::Role;

use crate::helpers::webhooks::{
    Receiver, SECRET, WITHIN, all_created_in_order, count, every_kind_arrives, hooked,
    raise_priority, report_read_by_u1,
};
use crate::helpers::{TestNode, eventually, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_each_save_and_its_emission_loses_no_webhook() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| hooked(c, &rx, 0)).await;
    let admin = node.socket("a1", Role::Admin).await;
    let admin_token = node.token("a1", Role::Admin);
    // From here every save's emission dies: nobody hears of anything over the sockets.
    node.state.test_hooks.kill_emissions(true);

    let chat = node.staff_chat("a1", "u1").await;
    raise_priority(&node, &admin_token, &chat).await;
    let m = send(&admin, &chat, "to the user").await;
    let user = node.socket("u1", Role::User).await;
    let delivered = user
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": m["id"] }),
        )
        .await;
    assert_eq!(delivered["ok"], true, "{delivered}");
    let read = user
        .ack(
            "message:read",
            json!({ "chatId": chat, "messageId": m["id"] }),
        )
        .await;
    assert_eq!(read["ok"], true, "{read}");
    let report = report_read_by_u1(&node, &admin_token, &user).await;

    let all = [
        "chat.created",
        "chat.updated",
        "message.created",
        "message.delivered",
        "message.read",
        "report.created",
        "report.read",
        "user.online",
    ];
    let got = every_kind_arrives(&rx, &all).await;
    let find = |kind: &str| got.iter().find(|r| r["type"] == kind).unwrap().clone();
    assert_eq!(find("chat.updated")["data"]["changed"], json!(["priority"]));
    assert_eq!(find("message.created")["data"]["message"]["id"], m["id"]);
    assert_eq!(find("message.read")["data"]["messageId"], m["id"]);
    assert_eq!(find("message.delivered")["data"]["messageId"], m["id"]);
    assert_eq!(find("report.read")["data"]["reportId"], report["id"]);
    assert!(got.iter().all(|r| r["valid"] == true), "{got:#?}");
    // The chat's events in the order they happened.
    let of_chat = |r: &&serde_json::Value| {
        r["answered"] == 200
            && (r["data"]["chatId"] == chat.as_str() || r["data"]["chat"]["id"] == chat.as_str())
    };
    let chat_order: Vec<&str> = got
        .iter()
        .filter(of_chat)
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(
        chat_order,
        [
            "chat.created",
            "chat.updated",
            "message.created",
            "message.delivered",
            "message.read"
        ],
        "{got:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_re_derived_from_the_store_keeps_its_place_among_the_live_ones() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created".into();
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    let first = send(&user, &chat, "first").await;
    let got = rx.until(WITHIN, |g| count(g, "message.created") == 1).await;
    assert_eq!(count(&got, "message.created"), 1, "{got:#?}");

    // Saved, then its node dies before emitting it: only the store knows of it.
    node.state.test_hooks.kill_emissions(true);
    let lost = send(&user, &chat, "saved, never emitted").await;
    node.state.test_hooks.kill_emissions(false);
    // The next one is published at once; it must not overtake the one the reconcile pass
    // queues a few seconds later.
    let after = send(&user, &chat, "after").await;

    all_created_in_order(&rx, &[first, lost, after]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_outbox_cannot_be_written_the_queue_stays_bounded_and_nothing_is_lost() {
    const BOUND: usize = 64 * 1024;
    const MESSAGES: usize = 40;
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created".into();
        c.webhooks.queue_bytes = BOUND;
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    let metrics = &node.state.metrics.webhooks;

    // The outbox cannot be written: events pile up in the node's queue, ~5 KiB each.
    node.state.webhooks.hold_writes(true);
    let text = "x".repeat(4_000);
    let mut sent = Vec::new();
    for _ in 0..MESSAGES {
        sent.push(send(&user, &chat, &text).await);
    }
    let queued = metrics.queue_bytes();
    assert!(
        queued > 0 && queued as usize <= BOUND,
        "the queue holds at most {BOUND} bytes: {queued}"
    );
    let deferred = metrics.deferred.get();
    assert!(
        deferred >= (MESSAGES - BOUND / 4_000) as u64,
        "the messages past the bound were left to the reconcile pass: {deferred}"
    );

    node.state.webhooks.hold_writes(false);
    all_created_in_order(&rx, &sent).await;
    assert!(eventually(WITHIN, || async { metrics.queue_bytes() == 0 }).await);
}
