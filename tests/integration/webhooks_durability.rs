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

/// Where a test's node dies after each save.
#[derive(Clone, Copy)]
enum Death {
    /// After the events written ahead of the emission (`kill_emissions`).
    BeforeEmission,
    /// Right after the save, before anything is written for it (`kill_after_saves`): only the
    /// pledges written ahead of the saves survive.
    AfterSave,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_each_save_and_its_emission_loses_no_webhook() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| hooked(c, &rx, 0)).await;
    every_saved_change_is_reported(&node, &rx, Death::BeforeEmission).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_right_after_each_save_loses_no_webhook() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| hooked(c, &rx, 0)).await;
    every_saved_change_is_reported(&node, &rx, Death::AfterSave).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mongodb_a_node_killed_right_after_each_save_loses_no_webhook() {
    let server = crate::helpers::mongo::shared();
    let rx = Receiver::start(SECRET).await;
    let uri = server.uri();
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.mongodb_uri = Some(uri.into());
        c.mongodb_database = crate::helpers::mongo::fresh_database();
    })
    .await;
    every_saved_change_is_reported(&node, &rx, Death::AfterSave).await;
}

/// Makes a change of every kind the store keeps while each emission dies at `death`: every
/// event arrives, signed, each chat's in the order they happened.
async fn every_saved_change_is_reported(node: &TestNode, rx: &Receiver, death: Death) {
    let admin = node.socket("a1", Role::Admin).await;
    let admin_token = node.token("a1", Role::Admin);
    // From here every save's emission dies: nobody hears of anything over the sockets.
    match death {
        Death::BeforeEmission => node.state.test_hooks.kill_emissions(true),
        Death::AfterSave => node.state.test_hooks.kill_after_saves(true),
    }

    let chat = node.staff_chat("a1", "u1").await;
    raise_priority(node, &admin_token, &chat).await;
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
    let report = report_read_by_u1(node, &admin_token, &user).await;

    // A presence transition is pledged ahead of the presence step that makes it: it survives
    // both deaths too.
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
    let got = every_kind_arrives(rx, &all).await;
    let find = |kind: &str| got.iter().find(|r| r["type"] == kind).unwrap().clone();
    assert_eq!(find("chat.updated")["data"]["changed"], json!(["priority"]));
    assert_eq!(find("chat.updated")["data"]["chat"]["priority"], "high");
    assert_eq!(find("chat.created")["data"]["chat"]["id"], chat.as_str());
    assert_eq!(find("message.created")["data"]["message"]["id"], m["id"]);
    assert_eq!(find("message.read")["data"]["messageId"], m["id"]);
    assert_eq!(find("message.delivered")["data"]["messageId"], m["id"]);
    assert_eq!(find("report.created")["data"]["report"]["id"], report["id"]);
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
async fn a_pledge_whose_change_was_never_saved_sends_nothing() {
    use switchboard::webhooks::Check;
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| hooked(c, &rx, 0)).await;
    let chat = node.staff_chat("a1", "u1").await;
    let pledges = &node.state.webhooks;
    // Written ahead of saves that never happened (their node died before them, or they
    // failed): a chat never created, a change never written, a report never read.
    let never = [
        (
            "chat.created",
            Check::ChatCreated {
                chat: switchboard::domain::ChatId::generate().as_str().to_owned(),
            },
        ),
        (
            "chat.updated",
            Check::ChatUpdated {
                chat: chat.clone(),
                changed: vec!["status".into()],
                by: "a1".into(),
            },
        ),
        (
            "report.read",
            Check::ReportRead {
                report: switchboard::domain::ReportId::generate()
                    .as_str()
                    .to_owned(),
                data: "{}".into(),
            },
        ),
    ];
    let mut ids = Vec::new();
    for (kind, check) in never {
        let id = switchboard::webhooks::fresh_id();
        let pledged = pledges
            .pledge(kind, id.clone(), format!("chat:{chat}"), 0, check)
            .await
            .unwrap();
        assert!(pledged.is_some());
        ids.push(id);
    }
    let outbox = &node.state.webhooks.running().unwrap().outbox;
    let open = || async {
        let far = switchboard::domain::now().timestamp_millis() + 3_600_000;
        outbox.stale_pledges(far, 10).await.unwrap().len()
    };
    assert!(open().await >= 3);

    // Settled by the reconcile pass: dropped, and the chat's later event is not held for ever.
    assert!(eventually(WITHIN, || async { open().await == 0 }).await);
    let token = node.token("a1", Role::Admin);
    raise_priority(&node, &token, &chat).await;
    let got = rx.until(WITHIN, |g| count(g, "chat.updated") >= 1).await;
    assert_eq!(count(&got, "chat.updated"), 1, "{got:#?}");
    assert!(
        got.iter()
            .all(|r| !ids.iter().any(|id| r["id"] == id.as_str())),
        "nothing for a change that was not saved: {got:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_more_chats_than_a_pass_reads_is_re_derived_in_full() {
    const CHATS: usize = 7;
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created".into();
    })
    .await;
    // Each pass reads 2 chats: the burst spans several passes.
    switchboard::webhooks::TEST_CHATS_PER_PASS.store(2, std::sync::atomic::Ordering::Relaxed);
    let mut sockets = Vec::new();
    let mut chats = Vec::new();
    for i in 0..CHATS {
        let id = format!("u{i}");
        chats.push(node.open_chat(&node.token(&id, Role::User)).await);
        sockets.push(node.socket(&id, Role::User).await);
    }
    // Saved, never emitted: only the store knows of them.
    node.state.test_hooks.kill_emissions(true);
    let mut expected = Vec::new();
    for (socket, chat) in sockets.iter().zip(&chats) {
        let m = send(socket, chat, "saved, never emitted").await;
        expected.push(format!("msg_{}", m["id"].as_str().unwrap()));
    }
    node.state.test_hooks.kill_emissions(false);

    let got = rx
        .until(WITHIN, |g| count(g, "message.created") >= CHATS)
        .await;
    let mut acked: Vec<String> = got
        .iter()
        .filter(|r| r["type"] == "message.created" && r["answered"] == 200)
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    acked.sort();
    acked.dedup();
    expected.sort();
    assert_eq!(acked, expected, "{got:#?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_a_presence_transition_and_its_webhook_loses_neither_status() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "user.online,user.offline".into();
    })
    .await;
    user_status_survives_kills(&[&node], &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_presence_a_node_killed_after_a_transition_loses_neither_status() {
    let cluster = crate::helpers::Cluster::start(0, crate::helpers::Topology::Single).await;
    let rx = Receiver::start(SECRET).await;
    let adjust = |c: &mut switchboard::Config| {
        hooked(c, &rx, 0);
        c.webhooks.events = "user.online,user.offline".into();
    };
    let sender = cluster.join_with("sender", adjust).await;
    let other = cluster.join_with("other", adjust).await;
    user_status_survives_kills(&[&other, &sender], &rx).await;
}

/// With every node's emissions dying right after their presence step (the claim of a
/// transition), before anything is written for it: `u1`'s `user.online` and `user.offline`
/// still arrive, once each (by id), in that order, from their pledges (`webhooks/pledges.rs`).
async fn user_status_survives_kills(nodes: &[&TestNode], rx: &Receiver) {
    for node in nodes {
        node.state.test_hooks.kill_after_saves(true);
    }
    let of = |g: &[serde_json::Value], kind: &str| {
        let mut ids: Vec<String> = g
            .iter()
            .filter(|r| r["type"] == kind && r["data"]["userId"] == "u1" && r["answered"] == 200)
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let user = nodes[0].socket("u1", Role::User).await;
    let got = rx.until(WITHIN, |g| of(g, "user.online") >= 1).await;
    assert_eq!(of(&got, "user.online"), 1, "{got:#?}");
    assert_eq!(
        got.iter().find(|r| r["type"] == "user.online").unwrap()["data"]["role"],
        "user"
    );

    user.close();
    let got = rx.until(WITHIN, |g| of(g, "user.offline") >= 1).await;
    assert_eq!(of(&got, "user.offline"), 1, "{got:#?}");
    // Once each, whatever settles later, and online first.
    assert!(crate::helpers::heartbeats_pass(nodes[0], 3).await);
    let got = rx.received().await;
    assert_eq!(of(&got, "user.online"), 1, "{got:#?}");
    assert_eq!(of(&got, "user.offline"), 1, "{got:#?}");
    let kinds: Vec<&str> = got
        .iter()
        .filter(|r| r["data"]["userId"] == "u1" && r["answered"] == 200)
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"user.online"), "{got:#?}");
    assert_eq!(kinds.last(), Some(&"user.offline"), "{got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_made_by_its_save_survives_a_node_killed_right_after_the_save() {
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created,message.delivered".into();
    })
    .await;
    let chat = node.staff_chat("a1", "u1").await;
    // The recipient's socket is on the sender's node: the save moves the delivery mark itself.
    let _admin = node.socket("a1", Role::Admin).await;
    let user = node.socket("u1", Role::User).await;
    node.state.test_hooks.kill_after_saves(true);
    let m = send(&user, &chat, "delivered by its own save").await;

    let ids = |g: &[serde_json::Value], kind: &str| {
        let mut ids: Vec<String> = g
            .iter()
            .filter(|r| r["type"] == kind && r["answered"] == 200)
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let got = rx
        .until(WITHIN, |g| {
            ids(g, "message.created") >= 1 && ids(g, "message.delivered") >= 1
        })
        .await;
    assert_eq!(ids(&got, "message.delivered"), 1, "{got:#?}");
    let delivered = got
        .iter()
        .find(|r| r["type"] == "message.delivered")
        .unwrap();
    assert_eq!(delivered["data"]["messageId"], m["id"], "{delivered:#}");
    assert_eq!(delivered["data"]["deliveredTo"], "a1", "{delivered:#}");
    assert_eq!(delivered["data"]["chatId"], chat.as_str(), "{delivered:#}");
    assert!(delivered["valid"] == true);
    // After the message it names.
    let kinds: Vec<&str> = got
        .iter()
        .filter(|r| r["answered"] == 200)
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(kinds, ["message.created", "message.delivered"], "{got:#?}");
}

/// The reconcile pass does not read again what this node queued itself: past a chat's first
/// look, a pass reads its newest message only (it read the chat's newest 200 every pass:
/// loadtest/journal/2026-12-08-webhook-cost.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_pass_does_not_read_again_the_messages_this_node_queued() {
    const SENT: usize = 40;
    let rx = Receiver::start(SECRET).await;
    let node = TestNode::start_with(|c| hooked(c, &rx, 0)).await;
    let metrics = &node.state.metrics.webhooks;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    send(&user, &chat, "first").await;
    // The chat's first look reads what its window holds.
    assert!(eventually(WITHIN, || async { metrics.reconcile_reads.get() >= 1 }).await);
    let (first_look, passes) = (
        metrics.reconcile_reads.get(),
        metrics.reconcile_passes.get(),
    );
    for i in 0..SENT {
        send(&user, &chat, &format!("m{i}")).await;
    }
    // Three passes later a window has ended after the last save (each ends 3 s before it starts).
    assert!(
        eventually(WITHIN, || async {
            metrics.reconcile_passes.get() >= passes + 3
        })
        .await
    );
    let got = rx
        .until(WITHIN, |g| count(g, "message.created") > SENT)
        .await;
    assert!(count(&got, "message.created") > SENT, "{got:#?}");
    let read = metrics.reconcile_reads.get() - first_look;
    let passes = metrics.reconcile_passes.get() - passes;
    assert!(
        read < SENT as u64 / 2,
        "{read} messages read in {passes} passes for {SENT} sent"
    );
}
