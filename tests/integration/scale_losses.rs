//! Issue 28 at 50,000 clients: the two ways a busy cluster lost or doubled events.
//!
//! - A node whose Redis subscriber fell behind lost adapter messages ("fred driver dropped a
//!   message", "pubsub channel lagged"): its sockets missed events and then heard later ones,
//!   so their offsets moved past the hole and no recovery got them back. Now the node closes
//!   its transports at the hole, and the clients resume from the log with everything.
//! - An append to the recovery log that timed out but had landed went out without its offset,
//!   and a client that later resumed from an earlier offset got it a second time from the log.
//!   Now the append's outcome is settled first.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::slow_redis::StallingProxy;
use crate::helpers::{Cluster, Sio, Topology, eventually};

fn seq(event: &Value) -> u64 {
    event["message"]["seq"]
        .as_u64()
        .expect("a message with a seq")
}

/// A counter of a node's `/metrics` (labels ignored), 0 when absent.
async fn counter(port: u16, name: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_node_whose_subscriber_falls_behind_closes_its_transports_and_nothing_is_lost() {
    const BURST: u64 = 400;
    let cluster = Cluster::build(Topology::Single)
        .nodes(1)
        .each(|c| c.rate_limit_per_sec = 100_000)
        .start()
        .await;
    let sender = &cluster[0];
    // A subscriber that holds 4 messages: a burst that arrives at once overflows it.
    let behind = cluster
        .process_with_env(&[("NODE_ID", "behind"), ("REDIS_SUBSCRIBER_BUFFER", "4")])
        .await;
    let alice = sender.token("alice", Role::User);
    let chat = sender.open_chat(&alice).await;
    let admin = sender.socket("a1", Role::Admin).await;
    let send = |content: String| json!({ "chatId": chat, "message": { "content": content } });
    let sock = Sio::connect(behind.port, Some(&alice))
        .await
        .expect("connects");
    let pid = sock.pid.clone().expect("the CONNECT answer carries a pid");
    sock.ack("joinUserRoom", json!("alice")).await;
    assert_eq!(
        admin.ack("message:send", send("first".into())).await["ok"],
        true
    );
    assert_eq!(seq(&sock.event("message:new").await), 1);

    // While the node is stopped, the burst queues in its subscriber connection; when it runs
    // again, fred reads it in one go, far faster than 4 slots can be handed on.
    behind.pause();
    for i in 0..BURST {
        let ack = admin.ack("message:send", send(format!("burst {i}"))).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    behind.resume();

    let all: Vec<u64> = (1..=BURST + 1).collect();
    let mut seen = vec![1];
    let complete = eventually(Duration::from_secs(15), || {
        seen.extend(sock.drain("message:new").iter().map(seq));
        let done = seen.len() >= all.len();
        async move { done }
    })
    .await;
    let closed = complete || sock.closed(Duration::from_secs(1)).await;
    if closed && !complete {
        // What socket.io-client does: reconnect with the pid and the offset of the last event
        // it got.
        let offset = sock.last_offset().expect("events carry offsets");
        let back = Sio::connect_with(
            sender.port,
            Some(json!({ "token": alice, "pid": pid, "offset": offset })),
        )
        .await
        .expect("reconnects");
        assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "recovered");
        back.ack("joinUserRoom", json!("alice")).await;
        seen.extend(back.drain("message:new").iter().map(seq));
    }
    assert_eq!(
        seen, all,
        "every message once, in order (transport closed: {closed})"
    );
    assert!(
        counter(behind.port, "switchboard_adapter_subscriber_gaps_total").await >= 1,
        "the burst overflowed the subscriber (else this test proves nothing)"
    );
}

#[tokio::test]
async fn an_append_that_times_out_but_lands_goes_out_with_its_offset_and_is_not_replayed() {
    let cluster = Cluster::start(0, Topology::Single).await;
    let stall = Arc::new(std::sync::Mutex::new(None::<(String, usize)>));
    // Held past the append's 2 s bound, and answered within the settling call's.
    let proxy =
        StallingProxy::start_holding(cluster.port(), stall.clone(), Duration::from_secs(3)).await;
    let slow = cluster.join_via(&proxy, "slow", |_| {}).await;
    let other = cluster.join("other").await;
    let alice = slow.token("alice", Role::User);
    let chat = slow.open_chat(&alice).await;
    let admin = slow.socket("a1", Role::Admin).await;
    let send = |content: &str| json!({ "chatId": chat, "message": { "content": content } });
    let sock = Sio::connect(other.port, Some(&alice))
        .await
        .expect("connects");
    let pid = sock.pid.clone().expect("the CONNECT answer carries a pid");
    sock.ack("joinUserRoom", json!("alice")).await;
    assert_eq!(admin.ack("message:send", send("before")).await["ok"], true);
    assert_eq!(seq(&sock.event("message:new").await), 1);

    // The append naming this message is held back 3 s: past the call's 2 s bound, then it
    // lands.
    *stall.lock().unwrap() = Some(("held back".to_owned(), 0));
    let ack = admin.ack("message:send", send("held back")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(seq(&sock.event("message:new").await), 2);
    let offset = sock.last_offset().expect("events carry offsets");
    // The held-back append has landed by now.
    let port = cluster.port();
    assert!(
        crate::helpers::redis::until(Duration::from_secs(10), move || {
            crate::helpers::redis::cli(port, &["XRANGE", "{sb}:rlog", "-", "+"])
                .contains("held back")
        })
        .await,
        "the held-back append landed"
    );

    // socket.io-client, after a blip: back with the offset of the last event it got.
    sock.cut();
    assert!(
        eventually(Duration::from_secs(10), || async {
            other.user_status("alice").await["sockets"] == 0
        })
        .await,
        "the node saw the connection go"
    );
    let back = Sio::connect_with(
        other.port,
        Some(json!({ "token": alice, "pid": pid, "offset": offset })),
    )
    .await
    .expect("reconnects");
    assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "recovered");
    back.ack("joinUserRoom", json!("alice")).await;
    let replayed: Vec<u64> = back.drain("message:new").iter().map(seq).collect();
    assert_eq!(
        replayed,
        Vec::<u64>::new(),
        "message 2 was heard live; its replay would be a duplicate"
    );
}
