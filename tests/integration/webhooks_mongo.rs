//! Webhooks with the outbox on MongoDB (a MongoDB-wire server): a failing receiver, and an
//! outage of the store itself.

use switchboard::domain::Role;

use crate::helpers::webhooks::{
    Receiver, SECRET, WITHIN, created_in_order, delivered_despite, hooked, retries,
};
use crate::helpers::{TestNode, eventually, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mongodb_a_failing_receiver_gets_every_event_in_order() {
    let server = crate::helpers::mongo::shared();
    let rx = Receiver::start(SECRET).await;
    rx.mode("fail", 0).await;
    let uri = server.uri();
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created".into();
        c.mongodb_uri = Some(uri.into());
        c.mongodb_database = crate::helpers::mongo::fresh_database();
    })
    .await;
    delivered_despite(&node, &rx, "fail", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_loses_neither_pending_deliveries_nor_events_published_during_it() {
    use crate::helpers::mongo::{MongoServer, TEST_TIMEOUT};
    let mut server = tokio::task::block_in_place(MongoServer::start);
    let rx = Receiver::start(SECRET).await;
    rx.mode("fail", 0).await;
    let uri = server.uri();
    let node = TestNode::start_with(|c| {
        hooked(c, &rx, 0);
        c.webhooks.events = "message.created,user.online".into();
        c.mongodb_uri = Some(uri.into());
        c.mongodb_database = "webhooks_outage".into();
        c.mongodb_timeout = TEST_TIMEOUT;
    })
    .await;
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&user, &chat, &format!("m{i}")).await);
    }
    assert!(eventually(WITHIN, || async { retries(&node) >= 2 }).await);

    tokio::task::block_in_place(|| server.stop());
    rx.mode("ok", 0).await;
    // Published while the outbox cannot be written: kept by the writer until it can.
    let _second = node.socket("u2", Role::User).await;
    tokio::task::block_in_place(|| server.restart());

    let expected: Vec<String> = sent
        .iter()
        .map(|m| format!("msg_{}", m["id"].as_str().unwrap()))
        .collect();
    let got = rx
        .until(WITHIN, |g| {
            created_in_order(g).0.len() >= expected.len()
                && g.iter()
                    .any(|r| r["type"] == "user.online" && r["data"]["userId"] == "u2")
        })
        .await;
    let (acked, ordered) = created_in_order(&got);
    assert_eq!(acked, expected, "{got:#?}");
    assert!(ordered);
    assert!(
        got.iter().any(|r| r["type"] == "user.online"
            && r["data"]["userId"] == "u2"
            && r["answered"] == 200),
        "u2's user.online, published during the outage: {got:#?}"
    );
}
