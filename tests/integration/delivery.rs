//! Delivery status over real sockets (`docs/delivery.md`): live delivery across two nodes on a
//! real `redis-server`, an offline recipient, the client's `message:delivered`, read implying
//! delivered, every node's history agreeing, the store writes a burst costs, and a connection
//! state recovery replay delivering what the recipient missed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::{AuthUser, ChatId, Role, Side, now};
use switchboard::ordering::Turn;
use switchboard::presence::SocketEntry;
use switchboard::service::delivery::COOLDOWN;
use switchboard::store::StoreOp;

use crate::helpers::quiet::no_more;
use crate::helpers::{Cluster, Sio, TestNode, Topology, eventually, send};

const LONG: Duration = Duration::from_secs(10);

/// The statuses of a chat's history as `who` (`role`) sees it over REST on `node`, oldest
/// first.
async fn statuses(node: &TestNode, chat: &str, who: &str, role: Role) -> Vec<String> {
    let token = node.token(who, role);
    let (status, body) = node
        .call(
            Method::GET,
            &format!("/api/chats/{chat}/messages"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut messages: Vec<Value> = body["messages"].as_array().cloned().unwrap_or_default();
    messages.sort_by_key(|m| m["seq"].as_u64());
    messages
        .iter()
        .map(|m| m["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn delivery_writes(node: &TestNode) -> u64 {
    node.state
        .metrics
        .store_operation(StoreOp::AdvanceDelivered)
        .duration
        .get_sample_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_to_staff_on_another_node_is_delivered_once() {
    let cluster = Cluster::start(2, Topology::Single).await;
    let [a, b] = cluster.nodes();
    let chat = b.staff_chat("a1", "u1").await;
    // The recipient (staff a1) has sockets on both nodes; the sender is on node a.
    let staff_b = b.socket("a1", Role::Admin).await;
    let staff_a = a.socket("a1", Role::Admin).await;
    let user = a.socket("u1", Role::User).await;
    // Presence of a1 must be cluster-wide before the send counts as live on b.
    assert!(
        eventually(LONG, || async {
            a.state.presence.status("a1").await.map(|s| s.sockets).ok() == Some(2)
        })
        .await
    );

    let sent = send(&user, &chat, "hello staff").await;
    assert_eq!(sent["status"], "sent");
    for socket in [&user, &staff_a, &staff_b] {
        let got = socket
            .try_event("message:delivered", LONG)
            .await
            .expect("message:delivered");
        assert_eq!(got["chatId"], chat);
        assert_eq!(got["messageId"], sent["id"]);
        assert_eq!(got["deliveredTo"], "a1");
        assert!(got["deliveredAt"].is_string());
    }
    no_more(
        &staff_b,
        "a1",
        "message:delivered",
        &[a, b],
        "one transition, not one per node or socket",
    )
    .await;
    // Every node's history shows the same status, for both sides.
    for node in [&a, &b] {
        assert_eq!(statuses(node, &chat, "u1", Role::User).await, ["delivered"]);
        assert_eq!(
            statuses(node, &chat, "a1", Role::Admin).await,
            ["delivered"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_recipient_keeps_it_sent_until_they_fetch_it() {
    let node = TestNode::start().await;
    let user_token = node.token("u1", Role::User);
    let chat = node.open_chat(&user_token).await;
    let user = node.socket("u1", Role::User).await;
    let first = send(&user, &chat, "anyone there?").await;
    let second = send(&user, &chat, "hello?").await;
    no_more(
        &user,
        "u1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    assert_eq!(
        statuses(&node, &chat, "u1", Role::User).await,
        ["sent", "sent"]
    );

    // Connecting alone does not deliver.
    let staff = node.socket("a1", Role::Admin).await;
    no_more(
        &user,
        "u1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    assert_eq!(
        statuses(&node, &chat, "u1", Role::User).await,
        ["sent", "sent"]
    );

    // Staff fetch it: one event, naming the newest message delivered.
    let synced = staff
        .ack("chat:sync", json!({ "chatId": chat, "afterSeq": 0 }))
        .await;
    assert_eq!(synced["ok"], true, "{synced}");
    let got = user
        .try_event("message:delivered", LONG)
        .await
        .expect("message:delivered after the fetch");
    assert_eq!(got["messageId"], second["id"]);
    assert_eq!(got["deliveredTo"], "a1");
    assert_eq!(
        statuses(&node, &chat, "u1", Role::User).await,
        ["delivered", "delivered"]
    );
    // Fetching again changes nothing.
    staff
        .ack("chat:sync", json!({ "chatId": chat, "afterSeq": 0 }))
        .await;
    no_more(
        &user,
        "u1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;

    // Read implies delivered, and status never moves back.
    let read = staff
        .ack(
            "message:read",
            json!({ "chatId": chat, "messageId": first["id"] }),
        )
        .await;
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(
        statuses(&node, &chat, "u1", Role::User).await,
        ["read", "delivered"]
    );
    staff
        .ack("chat:sync", json!({ "chatId": chat, "afterSeq": 0 }))
        .await;
    assert_eq!(
        statuses(&node, &chat, "a1", Role::Admin).await,
        ["read", "delivered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_before_delivery_goes_straight_to_read() {
    let node = TestNode::start().await;
    let chat = node.staff_chat("a1", "u1").await;
    let staff = node.socket("a1", Role::Admin).await;
    // The user is offline: the staff message stays `sent`.
    let staff_token = node.token("a1", Role::Admin);
    let (status, sent) = node
        .call(
            Method::POST,
            &format!("/api/chats/{chat}/messages"),
            Some(&staff_token),
            Some(json!({ "message": { "content": "your order shipped" } })),
        )
        .await;
    assert!(status == 200 || status == 201, "{sent}");
    let sent = if sent["message"].is_object() {
        sent["message"].clone()
    } else {
        sent
    };
    no_more(
        &staff,
        "a1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    let user = node.socket("u1", Role::User).await;
    let read = user
        .ack(
            "message:read",
            json!({ "chatId": chat, "messageId": sent["id"] }),
        )
        .await;
    assert_eq!(read["ok"], true, "{read}");
    staff
        .try_event("message:read", LONG)
        .await
        .expect("message:read");
    no_more(
        &staff,
        "a1",
        "message:delivered",
        &[&node],
        "no message:delivered for a message that went straight to read",
    )
    .await;
    assert_eq!(statuses(&node, &chat, "a1", Role::Admin).await, ["read"]);
    // A later fetch by the user does not move it back to delivered.
    user.ack("chat:sync", json!({ "chatId": chat, "afterSeq": 0 }))
        .await;
    no_more(
        &staff,
        "a1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    assert_eq!(statuses(&node, &chat, "u1", Role::User).await, ["read"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_confirmation_works_for_the_other_side_only() {
    let node = TestNode::start().await;
    let user_token = node.token("u1", Role::User);
    let chat = node.open_chat(&user_token).await;
    let user = node.socket("u1", Role::User).await;
    let sent = send(&user, &chat, "confirm me").await;
    let stranger = node.socket("u2", Role::User).await;
    let refused = stranger
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": sent["id"] }),
        )
        .await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["code"], "FORBIDDEN");
    // The sender's own side confirming changes nothing.
    let own = user
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": sent["id"] }),
        )
        .await;
    assert_eq!(own["ok"], true, "{own}");
    no_more(
        &user,
        "u1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    assert_eq!(statuses(&node, &chat, "u1", Role::User).await, ["sent"]);
    let bad = user
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": "nope" }),
        )
        .await;
    assert_eq!(bad["ok"], false);

    // Staff confirm (a staff socket connecting makes no delivery by itself).
    let staff = node.socket("a1", Role::Admin).await;
    let ok = staff
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": sent["id"] }),
        )
        .await;
    assert_eq!(ok["ok"], true, "{ok}");
    let got = user
        .try_event("message:delivered", LONG)
        .await
        .expect("event");
    assert_eq!(got["messageId"], sent["id"]);
    assert_eq!(
        statuses(&node, &chat, "u1", Role::User).await,
        ["delivered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_to_an_online_recipient_on_the_same_node_costs_no_delivery_writes() {
    // A burst of 100 within the per-socket rate limit.
    let node = TestNode::start_with(|c| c.rate_limit_per_sec = 200).await;
    let chat = node.staff_chat("a1", "u1").await;
    let staff = node.socket("a1", Role::Admin).await;
    let user = node.socket("u1", Role::User).await;
    let before = delivery_writes(&node);
    let mut last = Value::Null;
    for i in 0..100 {
        user.emit(
            "message:send",
            json!({ "chatId": chat, "message": { "content": format!("burst {i}") } }),
        );
    }
    for _ in 0..100 {
        last = staff
            .try_event("message:new", LONG)
            .await
            .expect("message:new");
    }
    assert!(
        eventually(LONG, || async {
            // Fetched by the sender's side, which delivers nothing itself.
            statuses(&node, &chat, "u1", Role::User)
                .await
                .iter()
                .all(|s| s == "delivered")
        })
        .await,
        "all 100 delivered"
    );
    let events = {
        let mut n = 0;
        while let Some(e) = staff.try_event("message:delivered", LONG).await {
            n += 1;
            if e["messageId"] == last["message"]["id"] {
                break;
            }
        }
        n
    };
    let writes = delivery_writes(&node) - before;
    eprintln!(
        "100 messages to an online recipient: {writes} delivery store writes, {events} message:delivered"
    );
    // The staff socket is on the sender's node: each save marked its message delivered, and
    // no write of its own was needed; the announcements are coalesced.
    assert_eq!(writes, 0, "{writes} delivery writes beside the saves");
    assert!(
        (1..=25).contains(&events),
        "coalesced: {events} message:delivered for 100 messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovery_replay_delivers_what_the_recipient_missed() {
    // Arrange: the chat's user connected, one staff message delivered live.
    let node = TestNode::start().await;
    let chat = node.staff_chat("a1", "u1").await;
    let staff = node.socket("a1", Role::Admin).await;
    let user_token = node.token("u1", Role::User);
    let user = Sio::connect(node.port, Some(&user_token))
        .await
        .expect("connects");
    let pid = user.pid.clone().expect("the CONNECT answer carries a pid");
    let before = send(&staff, &chat, "before").await;
    assert_eq!(
        user.event("message:new").await["message"]["id"],
        before["id"]
    );
    let live = staff
        .try_event("message:delivered", LONG)
        .await
        .expect("the live hand-off delivers");
    assert_eq!(live["messageId"], before["id"]);
    let offset = user.last_offset().expect("message:new carries its offset");

    // The connection is cut (no Socket.IO disconnect); once the node has seen it, a message
    // sent meanwhile stays `sent`.
    user.cut();
    let admin_token = node.token("a1", Role::Admin);
    assert!(
        eventually(LONG, || async {
            let (_, body) = node
                .call(
                    Method::GET,
                    "/api/users/u1/status",
                    Some(&admin_token),
                    None,
                )
                .await;
            body["sockets"] == 0
        })
        .await,
        "the node never saw the cut"
    );
    let away = send(&staff, &chat, "while you were away").await;
    no_more(
        &staff,
        "a1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    assert_eq!(
        statuses(&node, &chat, "a1", Role::Admin).await,
        ["delivered", "sent"]
    );

    // Act: the user recovers the session; the replay hands the message over.
    let back = Sio::connect_with(
        node.port,
        Some(json!({ "token": user_token, "pid": pid, "offset": offset })),
    )
    .await
    .expect("reconnects");
    assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "recovered");
    assert_eq!(back.event("message:new").await["message"]["id"], away["id"]);

    // Assert: one message:delivered naming it, to the sender's side too, and the status stored.
    let delivered = staff
        .try_event("message:delivered", LONG)
        .await
        .expect("message:delivered after the replay");
    assert_eq!(delivered["messageId"], away["id"]);
    assert_eq!(delivered["deliveredTo"], "u1");
    no_more(
        &staff,
        "a1",
        "message:delivered",
        &[&node],
        "no more message:delivered",
    )
    .await;
    assert_eq!(
        statuses(&node, &chat, "a1", Role::Admin).await,
        ["delivered", "delivered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_chat_costs_one_delivery_write_per_cooldown_not_one_per_window() {
    // Messages one after another (each sent once the previous reached staff): a few ms apart,
    // so each would open a 5 ms window of its own without the cooldown. The staff socket is on
    // another node than the sender's, so the sender's node decides each delivery live (on one
    // node the saves would mark them, with no delivery write at all).
    let cluster = Cluster::build(Topology::Single)
        .each(|c| c.rate_limit_per_sec = 200)
        .start()
        .await;
    let [node, other] = cluster.nodes();
    let chat = node.staff_chat("a2", "u2").await;
    let staff = other.socket("a2", Role::Admin).await;
    let user = node.socket("u2", Role::User).await;
    assert!(
        eventually(LONG, || async {
            node.state
                .presence
                .status("a2")
                .await
                .map(|s| s.sockets)
                .ok()
                == Some(1)
        })
        .await,
        "staff presence reached the sender's node"
    );
    let before = delivery_writes(node);
    let mut last = Value::Null;
    for i in 0..50 {
        user.emit(
            "message:send",
            json!({ "chatId": chat, "message": { "content": format!("busy {i}") } }),
        );
        last = staff
            .try_event("message:new", LONG)
            .await
            .expect("message:new");
    }
    assert!(
        eventually(LONG, || async {
            statuses(node, &chat, "u2", Role::User)
                .await
                .iter()
                .all(|s| s == "delivered")
        })
        .await,
        "all 50 delivered"
    );
    assert!(
        statuses(other, &chat, "u2", Role::User)
            .await
            .iter()
            .all(|s| s == "delivered"),
        "the other node's history agrees"
    );
    let mut events = 0;
    while let Some(e) = staff.try_event("message:delivered", LONG).await {
        events += 1;
        if e["messageId"] == last["message"]["id"] {
            break;
        }
    }
    let writes = delivery_writes(node) - before;
    eprintln!("50 messages in a row: {writes} delivery store writes, {events} message:delivered");
    assert!(
        (1..=3).contains(&writes) && (1..=3).contains(&events),
        "one write and one event per cooldown: {writes} writes, {events} events for 50 messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staff_message_to_a_user_on_the_same_node_is_delivered_by_its_save() {
    let node = TestNode::start().await;
    let chat = node.staff_chat("a3", "u3").await;
    let staff = node.socket("a3", Role::Admin).await;
    let user = node.socket("u3", Role::User).await;
    let before = delivery_writes(&node);
    let sent = send(&staff, &chat, "your order shipped").await;
    assert_eq!(
        sent["status"], "sent",
        "the ack shows the message before its hand-off"
    );
    for socket in [&staff, &user] {
        let got = socket
            .try_event("message:delivered", LONG)
            .await
            .expect("message:delivered");
        assert_eq!(got["messageId"], sent["id"]);
        assert_eq!(got["deliveredTo"], "u3");
    }
    assert_eq!(delivery_writes(&node) - before, 0, "the save marked it");
    assert_eq!(
        statuses(&node, &chat, "a3", Role::Admin).await,
        ["delivered"]
    );
}

/// The delivery coalescer on tokio's paused clock (the way mini-redis's `tests/server.rs` tests
/// its expiry): a user sends a message every 100 ms for 3 s of virtual time, with the chat's
/// staff connected elsewhere in the cluster, so every delivery is decided by a flush. One
/// delivery write per cooldown, not one per message, and the last message delivered once the
/// chat is quiet. No real waiting: the test runs in milliseconds whatever the cooldown.
#[tokio::test]
async fn a_busy_chat_is_written_once_per_cooldown_on_a_paused_clock() {
    // Arrange: staff a2 connected on another node (presence), so no save marks a message
    // delivered itself and every flush checks who is connected.
    let node = TestNode::start_with(|c| c.rate_limit_per_sec = 1000).await;
    let chat = ChatId::from_trusted(node.staff_chat("a2", "u2").await);
    let a2 = SocketEntry {
        user_id: "a2".into(),
        socket_id: "a2-elsewhere".into(),
        user_name: "a2 name".into(),
        user_role: Role::Admin,
        connected_at: now(),
        node: "elsewhere".into(),
    };
    node.state.presence.connect(&a2).await.expect("a2 counted");
    let user = AuthUser {
        id: "u2".into(),
        name: "u2 name".into(),
        role: Role::User,
    };
    tokio::time::pause();
    // While the store works on its blocking pool the runtime is idle, and a paused clock leaps
    // to the next timer: a 1 ms ticker keeps it to a creep, never a whole cooldown.
    let ticker = tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        loop {
            tick.tick().await;
        }
    });
    let before = delivery_writes(&node);
    let started = tokio::time::Instant::now();

    // Act: 30 messages, 100 ms apart.
    const MESSAGES: u64 = 30;
    let mut last_seq = 0;
    for i in 0..MESSAGES {
        let input = serde_json::from_value(
            json!({ "chatId": chat.as_str(), "message": { "content": format!("busy {i}") } }),
        )
        .expect("a message:send payload");
        let saved = node
            .state
            .chats()
            .send_message(&user, input, Turn::unordered())
            .await
            .expect("saved");
        last_seq = saved.into_inner().seq;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy = started.elapsed();
    // The flusher ends once a cooldown passes with no trigger.
    let quiet = eventually(COOLDOWN * 3, || async { node.state.delivery.is_idle() }).await;
    ticker.abort();

    // Assert: at most one write per cooldown of the busy time (and the first window's), the
    // last message delivered.
    assert!(quiet, "the flusher did not end after the chat went quiet");
    let writes = delivery_writes(&node) - before;
    let windows = 2 + (busy.as_millis() / COOLDOWN.as_millis()) as u64;
    eprintln!("paused clock: {writes} delivery writes for {MESSAGES} messages over {busy:?}");
    assert!(
        (1..=windows).contains(&writes),
        "{writes} delivery writes for {MESSAGES} messages over {busy:?} of paused time \
         (at most one per {COOLDOWN:?}: {windows})"
    );
    let stored = node
        .state
        .store
        .chat(&chat)
        .await
        .unwrap()
        .expect("the chat");
    assert_eq!(
        stored.delivered.of(Side::Staff),
        last_seq,
        "every message delivered"
    );
}
