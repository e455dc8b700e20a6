//! Webhooks in a cluster: one sender (a Redis lease) taken over when it dies, deliveries
//! resumed after a Redis restart, `user.offline` once across a drain and a kill.

use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::webhooks::{Receiver, SECRET, WITHIN, count, created_in_order, hooked};
use crate::helpers::{Cluster, TEST_HEARTBEAT_SECS, TEST_TTL_SECS, Topology, eventually, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_sigkilled_mid_delivery_is_taken_over_and_nothing_is_lost() {
    let cluster = Cluster::start(0, Topology::Single).await;
    let rx = Receiver::start(SECRET).await;
    // Requests hang: the sender is mid-delivery when it dies.
    rx.mode("slow", 60).await;
    let (ttl, beat, url) = (
        TEST_TTL_SECS.to_string(),
        TEST_HEARTBEAT_SECS.to_string(),
        rx.url(),
    );
    let mut doomed = cluster
        .process_with_env(&[
            ("NODE_ID", "doomed"),
            ("PRESENCE_TTL_SECS", &ttl),
            ("HEARTBEAT_INTERVAL_SECS", &beat),
            ("WEBHOOK_URL", &url),
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_EVENTS", "message.created"),
            ("WEBHOOK_LEASE_SECS", "2"),
            ("WEBHOOK_TIMEOUT_SECS", "30"),
            ("WEBHOOK_MAX_BACKOFF_SECS", "1"),
        ])
        .await;
    let http = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{}/metrics", doomed.port);
    let doomed_sends = eventually(WITHIN, || {
        let (http, metrics) = (http.clone(), metrics.clone());
        async move {
            let text = match http.get(metrics).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            text.lines()
                .any(|l| l.starts_with("switchboard_webhook_sender{") && l.ends_with(" 1"))
        }
    })
    .await;
    assert!(doomed_sends, "the first node holds the sender lease");
    let survivor = cluster
        .join_with("survivor", |c| {
            hooked(c, &rx, 0);
            c.webhooks.events = "message.created".into();
            c.webhooks.lease_secs = 2;
        })
        .await;
    assert_eq!(
        survivor
            .state
            .metrics
            .webhooks
            .outcome("default", "sent")
            .get(),
        0
    );

    let token = survivor.token("u1", Role::User);
    let chat = survivor.open_chat(&token).await;
    let user = survivor.socket("u1", Role::User).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&user, &chat, &format!("m{i}")).await);
    }
    let first = format!("msg_{}", sent[0]["id"].as_str().unwrap());
    let got = rx.until(WITHIN, |g| !g.is_empty()).await;
    assert_eq!(
        got.first().map(|r| r["id"].clone()),
        Some(json!(first)),
        "{got:#?}"
    );
    assert_eq!(
        rx.received().await.len(),
        1,
        "one event of the chat in flight"
    );

    doomed.kill();
    rx.mode("ok", 0).await;
    let expected: Vec<String> = sent
        .iter()
        .map(|m| format!("msg_{}", m["id"].as_str().unwrap()))
        .collect();
    let answered = |g: &[Value]| -> Vec<String> {
        let (acked, _) = created_in_order(
            &g.iter()
                .filter(|r| r["mode"] == "ok")
                .cloned()
                .collect::<Vec<_>>(),
        );
        acked
    };
    let got = rx
        .until(WITHIN, |g| answered(g).len() >= expected.len())
        .await;
    assert_eq!(answered(&got), expected, "taken over, in order: {got:#?}");
    assert!(got.iter().all(|r| r["valid"] == true));
    assert!(
        survivor
            .state
            .metrics
            .webhooks
            .outcome("default", "sent")
            .get()
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_while_redis_restarts_are_all_delivered_in_order() {
    let mut cluster = Cluster::start(0, Topology::Single).await;
    let rx = Receiver::start(SECRET).await;
    let node = cluster
        .join_with("n1", |c| {
            hooked(c, &rx, 0);
            c.webhooks.events = "message.created".into();
            c.webhooks.lease_secs = 2;
        })
        .await;
    let redis = cluster.server();
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    let first = send(&user, &chat, "before").await;
    let got = rx.until(WITHIN, |g| count(g, "message.created") == 1).await;
    assert_eq!(count(&got, "message.created"), 1, "{got:#?}");

    redis.kill();
    // Without Redis the node cannot renew its lease: it stops sending (another node might hold
    // it by now), while saves go on and their events wait in the outbox.
    let stopped = eventually(WITHIN, || async {
        node.state.metrics.webhooks.outcome("default", "sent").get() == 1
            && !node.state.webhooks.running().unwrap().lease.is_held()
    })
    .await;
    assert!(stopped, "the lease lapses without Redis");
    let mut during = Vec::new();
    for i in 0..3 {
        let ack = user
            .ack(
                "message:send",
                json!({ "chatId": chat, "message": { "content": format!("during {i}") } }),
            )
            .await;
        assert_eq!(ack["ok"], true, "saved while Redis is down: {ack}");
        during.push(ack["message"].clone());
    }
    redis.restart().await;

    let expected: Vec<String> = std::iter::once(&first)
        .chain(during.iter())
        .map(|m| format!("msg_{}", m["id"].as_str().unwrap()))
        .collect();
    let got = rx
        .until(WITHIN, |g| created_in_order(g).0.len() >= expected.len())
        .await;
    let (acked, ordered) = created_in_order(&got);
    assert_eq!(acked, expected, "{got:#?}");
    assert!(ordered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_offline_is_reported_once_across_a_drain_and_a_kill() {
    let cluster = Cluster::start(0, Topology::Single).await;
    let rx = Receiver::start(SECRET).await;
    let adjust = |c: &mut switchboard::Config| {
        hooked(c, &rx, 0);
        c.webhooks.events = "user.online,user.offline".into();
    };
    // The survivor starts first: it holds the sender lease.
    let survivor = cluster.join_with("survivor", adjust).await;
    let drained = cluster.join_with("drained", adjust).await;
    let (ttl, beat, url) = (
        TEST_TTL_SECS.to_string(),
        TEST_HEARTBEAT_SECS.to_string(),
        rx.url(),
    );
    let mut doomed = cluster
        .process_with_env(&[
            ("NODE_ID", "doomed"),
            ("PRESENCE_TTL_SECS", &ttl),
            ("HEARTBEAT_INTERVAL_SECS", &beat),
            ("WEBHOOK_URL", &url),
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_EVENTS", "user.online,user.offline"),
        ])
        .await;
    let _on_drained = drained.socket("u-drained", Role::User).await;
    let _on_doomed =
        crate::helpers::Sio::connect(doomed.port, Some(&survivor.token("u-killed", Role::User)))
            .await
            .expect("connects to the process node");
    let of = |g: &[Value], kind: &str, user: &str| {
        g.iter()
            .filter(|r| r["type"] == kind && r["data"]["userId"] == user && r["answered"] == 200)
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let got = rx
        .until(WITHIN, |g| {
            of(g, "user.online", "u-drained") == 1 && of(g, "user.online", "u-killed") == 1
        })
        .await;
    assert_eq!(of(&got, "user.online", "u-killed"), 1, "{got:#?}");

    drained.stop().await;
    doomed.kill();
    let got = rx
        .until(WITHIN, |g| {
            of(g, "user.offline", "u-drained") >= 1 && of(g, "user.offline", "u-killed") >= 1
        })
        .await;
    assert_eq!(of(&got, "user.offline", "u-drained"), 1, "{got:#?}");
    assert_eq!(of(&got, "user.offline", "u-killed"), 1, "{got:#?}");
    // Announced by a node that never held their sockets: the role still comes with it.
    for user in ["u-drained", "u-killed"] {
        let offline = got
            .iter()
            .find(|r| r["type"] == "user.offline" && r["data"]["userId"] == user)
            .unwrap();
        assert_eq!(offline["data"]["role"], "user", "{offline:#}");
    }
    // A few heartbeats later (every node claims due announcements at each): still once.
    assert!(crate::helpers::heartbeats_pass(&survivor, 3).await);
    let got = rx.received().await;
    assert_eq!(of(&got, "user.offline", "u-drained"), 1, "{got:#?}");
    assert_eq!(of(&got, "user.offline", "u-killed"), 1, "{got:#?}");
}
