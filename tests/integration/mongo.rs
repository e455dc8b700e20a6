//! The MongoDB store against a real MongoDB-wire server (`secantusd-py`): the store contract,
//! index usage, several stores on one database, retention, outages and recovery, and a node
//! over real sockets while MongoDB goes away and comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::domain::*;
use switchboard::store::{MongoStore, Store, StoreError};

use crate::helpers::mongo::{MongoServer, TEST_TIMEOUT, fresh_database, shared};
use crate::helpers::quiet::no_more;
use crate::helpers::{TestNode, eventually};

/// How long a test waits for the store to come back after the server does.
const RECOVERY: Duration = Duration::from_secs(30);

/// A store on the shared server, in a database of its own.
async fn mongo_store() -> (Arc<dyn Store>, ()) {
    let server = tokio::task::block_in_place(shared);
    (Arc::new(server.store(&fresh_database()).await), ())
}

crate::contract_tests!(mongo, mongo_store);

/// Three stores (three clients) on one database race on one delivery mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_concurrent_forward_only_from_three_stores() {
    let server = tokio::task::block_in_place(shared);
    let db = fresh_database();
    let a: Arc<dyn Store> = Arc::new(server.store(&db).await);
    let b: Arc<dyn Store> = Arc::new(server.store(&db).await);
    let c: Arc<dyn Store> = Arc::new(server.store(&db).await);
    crate::store_contract::concurrent_forward_only_from_three_stores([a, b, c]).await;
}

fn user(id: &str) -> AuthUser {
    AuthUser {
        id: id.into(),
        name: format!("{id} name"),
        role: Role::Admin,
    }
}

fn text_from(chat: &ChatId, sender: &AuthUser, body: &str, cid: Option<String>) -> NewMessage {
    NewMessage {
        id: switchboard::domain::MessageId::generate(),
        chat_id: chat.clone(),
        sender: sender.clone(),
        body: MessageBody {
            content: body.into(),
            kind: MessageType::Text,
            file_url: None,
            file_name: None,
        },
        client_message_id: cid,
        delivered: false,
    }
}

async fn new_chat(store: &dyn Store) -> Chat {
    store
        .create_chat(NewChat {
            id: ChatId::generate(),
            participants: vec!["u1".into()],
            title: "t".into(),
            priority: Priority::Low,
            assigned_admin: None,
            queued: false,
        })
        .await
        .expect("chat created")
}

/// Waits until `ping` succeeds, or fails the test after `RECOVERY`.
async fn until_ready(store: &dyn Store) -> Duration {
    let start = Instant::now();
    let ready = eventually(RECOVERY, || async { store.ping().await.is_ok() }).await;
    assert!(ready, "store not ready after {RECOVERY:?}");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_is_served_by_the_index_it_names() {
    let store = tokio::task::block_in_place(shared)
        .store(&fresh_database())
        .await;

    let plans = store.query_plans().await.expect("explain answers");

    for p in &plans {
        eprintln!(
            "{:<28} {:<26} scans {:?}{}",
            p.query,
            p.expected_index,
            p.used_indexes,
            if p.collection_scan { " + COLLSCAN" } else { "" }
        );
    }
    assert!(plans.len() >= 19, "every query shape explained: {plans:?}");
    let bad: Vec<_> = plans.iter().filter(|p| !p.uses_expected_index()).collect();
    assert!(
        bad.is_empty(),
        "queries not served by their index: {bad:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_created_at_start_and_again_without_harm() {
    let server = tokio::task::block_in_place(shared);
    let db = fresh_database();
    let first = server.store(&db).await;
    until_ready(&first).await;
    let second = server.store(&db).await;

    until_ready(&second).await;

    let names = second.index_names("messages").await.unwrap();
    for ix in ["messages_chat_seq", "messages_client_id", "messages_unread"] {
        assert!(names.iter().any(|n| n == ix), "{ix} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "messages_ttl"),
        "retention is off by default"
    );
    let chats = second.index_names("chats").await.unwrap();
    assert!(
        chats.iter().any(|n| n == "chats_participant_updated")
            && chats.iter().any(|n| n == "chats_updated"),
        "{chats:?}"
    );
    let reports = second.index_names("report_messages").await.unwrap();
    assert!(
        reports.iter().any(|n| n == "reports_user_created"),
        "{reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_creates_a_ttl_index_and_a_new_period_replaces_it() {
    let server = tokio::task::block_in_place(shared);
    let db = fresh_database();
    let mut settings = server.settings(&db);
    settings.message_retention = Some(Duration::from_secs(30 * 86_400));
    let monthly = MongoStore::connect(settings.clone()).await.unwrap();
    until_ready(&monthly).await;
    assert_eq!(
        monthly.message_retention_on_server().await.unwrap(),
        Some(Duration::from_secs(30 * 86_400))
    );

    settings.message_retention = Some(Duration::from_secs(7 * 86_400));
    let weekly = MongoStore::connect(settings).await.unwrap();

    until_ready(&weekly).await;
    assert_eq!(
        weekly.message_retention_on_server().await.unwrap(),
        Some(Duration::from_secs(7 * 86_400)),
        "the period changed in place"
    );
    let chat = new_chat(&weekly).await;
    assert!(
        weekly
            .save_message(text_from(&chat.id, &user("a1"), "kept for a week", None))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_on_one_database_hand_out_unique_increasing_seqs() {
    let server = tokio::task::block_in_place(shared);
    let db = fresh_database();
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(server.store(&db).await));
    }
    let chat = new_chat(stores[0].as_ref()).await;

    let mut tasks = Vec::new();
    for s in 0..8 {
        let stores = stores.clone();
        let chat = chat.id.clone();
        tasks.push(tokio::spawn(async move {
            let sender = user(&format!("s{s}"));
            let mut seqs = Vec::new();
            for i in 0..10usize {
                // Each send goes through another node; every third one is retried on yet another.
                let node = &stores[(s + i) % 3];
                let saved = node
                    .save_message(text_from(&chat, &sender, "m", Some(format!("c{i}"))))
                    .await
                    .unwrap();
                assert!(saved.is_created());
                let first = saved.into_inner();
                if i % 3 == 0 {
                    let retry = stores[(s + i + 1) % 3]
                        .save_message(text_from(&chat, &sender, "m", Some(format!("c{i}"))))
                        .await
                        .unwrap();
                    assert!(
                        !retry.is_created(),
                        "a retry on another node returns the first save"
                    );
                    assert_eq!(retry.into_inner(), first);
                }
                seqs.push(first.seq);
            }
            seqs
        }));
    }

    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one sender's seqs increase: {seqs:?}"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=80).collect::<Vec<u64>>(),
        "retries used up no seq"
    );
    let history = stores[2]
        .messages(&chat.id, HistoryPage::After(0), 500)
        .await
        .unwrap();
    assert_eq!(history.len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_operations_within_the_timeout_and_restart_recovers_the_same_store() {
    let mut server = tokio::task::block_in_place(MongoServer::start);
    let store = server.store("outage").await;
    let chat = new_chat(&store).await;
    let a1 = user("a1");
    assert_eq!(
        store
            .save_message(text_from(&chat.id, &a1, "before", None))
            .await
            .unwrap()
            .into_inner()
            .seq,
        1
    );

    tokio::task::block_in_place(|| server.stop());

    let started = Instant::now();
    let during = store
        .save_message(text_from(&chat.id, &a1, "during", None))
        .await;
    let took = started.elapsed();
    assert!(
        matches!(during, Err(StoreError::Unavailable(_))),
        "{during:?}"
    );
    assert!(
        took < TEST_TIMEOUT + Duration::from_millis(500),
        "failed in {took:?}"
    );
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.messages(&chat.id, HistoryPage::Latest, 10).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < 2 * TEST_TIMEOUT + Duration::from_millis(500));

    tokio::task::block_in_place(|| server.restart());
    let recovered_in = until_ready(&store).await;

    let after = store
        .save_message(text_from(&chat.id, &a1, "after", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.seq, 2,
        "nothing was saved during the outage, and the counter survived"
    );
    let history = store
        .messages(&chat.id, HistoryPage::After(0), 10)
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        vec!["before", "after"]
    );
    eprintln!("outage: failed in {took:?}, recovered {recovered_in:?} after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_built_before_its_server_starts_becomes_usable_when_it_does() {
    let mut server = MongoServer::unstarted();
    let store = server.store("late").await;
    assert!(
        matches!(store.ping().await, Err(StoreError::Unavailable(_))),
        "not ready without a server"
    );

    tokio::task::block_in_place(|| server.restart());
    until_ready(&store).await;

    let names = store.index_names("messages").await.unwrap();
    assert!(
        names.iter().any(|n| n == "messages_chat_seq"),
        "indexes created once reachable: {names:?}"
    );
    let chat = new_chat(&store).await;
    assert_eq!(
        store
            .save_message(text_from(&chat.id, &user("a1"), "hi", None))
            .await
            .unwrap()
            .into_inner()
            .seq,
        1
    );
}

/// Waits until `/readyz` answers `want`, or fails the test after `RECOVERY`.
async fn until_readyz(node: &TestNode, want: u16) {
    let answered = eventually(RECOVERY, || async {
        node.call(reqwest::Method::GET, "/readyz", None, None)
            .await
            .0
            == want
    })
    .await;
    let (status, body) = node.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert!(answered, "/readyz still {status} {body}, want {want}");
}

/// Waits until `user`'s socket counts in presence. socketioxide sends the CONNECT packet before
/// the node's async connect handler has registered the event handlers, so an event sent right
/// after connecting can be lost; presence is written at the end of that handler.
async fn until_socket_registered(node: &TestNode, user: &str, token: &str) {
    let path = format!("/api/users/{user}/status");
    let registered = eventually(RECOVERY, || async {
        let (status, body) = node
            .call(reqwest::Method::GET, &path, Some(token), None)
            .await;
        status == 200 && body["sockets"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(registered, "socket of {user} never registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_on_mongodb_starts_before_it_answers_unavailable_while_it_is_down_and_recovers() {
    let mut server = MongoServer::unstarted();
    let uri = server.uri();
    let node = TestNode::start_with(|c| {
        c.mongodb_uri = Some(uri.into());
        c.mongodb_database = "node".into();
        c.mongodb_timeout = TEST_TIMEOUT;
    })
    .await;
    let (status, _) = node.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503, "not ready before MongoDB answers");

    tokio::task::block_in_place(|| server.restart());
    until_readyz(&node, 200).await;
    let user_token = node.token("u1", Role::User);
    let chat = node.open_chat(&user_token).await;
    let socket = node.socket("u1", Role::User).await;
    until_socket_registered(&node, "u1", &user_token).await;
    let ack = socket
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "one" } }),
        )
        .await;
    assert_eq!(
        (ack["ok"].clone(), ack["message"]["seq"].clone()),
        (json!(true), json!(1)),
        "{ack}"
    );
    socket.event("message:new").await;

    tokio::task::block_in_place(|| server.stop());
    let ack = socket
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "lost" } }),
        )
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
    until_readyz(&node, 503).await;
    // A refused send emits nothing (an emission comes before the ack): the witness follows.
    no_more(&socket, "u1", "message:new", &[&node], "nothing delivered").await;

    tokio::task::block_in_place(|| server.restart());
    until_readyz(&node, 200).await;
    let ack = socket
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "two" } }),
        )
        .await;
    assert_eq!(
        (ack["ok"].clone(), ack["message"]["seq"].clone()),
        (json!(true), json!(2)),
        "{ack}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_many_gridfs_chunks_round_trips_byte_for_byte() {
    let store = tokio::task::block_in_place(shared)
        .store(&fresh_database())
        .await;
    // 3.5 MiB: fourteen full 255 KiB chunks and a partial one.
    let data: Vec<u8> = (0..(7 * 512 * 1024))
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let meta = FileMeta {
        id: FileId::generate(),
        file_name: "big.bin".into(),
        content_type: "application/octet-stream".into(),
        size: data.len() as u64,
        uploaded_by: "u1".into(),
        created_at: now(),
    };

    store
        .save_upload(meta.clone(), Box::new(std::io::Cursor::new(data.clone())))
        .await
        .unwrap();

    let (m, back) = store.upload(&meta.id).await.unwrap().expect("file found");
    assert_eq!(m, meta);
    let back = switchboard::store::read_to_end(back).await.unwrap();
    assert!(back[..] == data[..], "same bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_attempts_with_one_client_message_id_save_one_message() {
    let server = tokio::task::block_in_place(shared);
    let db = fresh_database();
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(server.store(&db).await));
    }
    let chat = new_chat(stores[0].as_ref()).await;

    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = stores[i % 3].clone();
        let chat = chat.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .save_message(text_from(&chat, &user("a1"), "once", Some("same".into())))
                .await
                .unwrap()
        }));
    }

    let mut saved = Vec::new();
    for t in tasks {
        saved.push(t.await.unwrap());
    }
    assert_eq!(
        saved.iter().filter(|s| s.is_created()).count(),
        1,
        "one save wins"
    );
    let first = saved[0].clone().into_inner();
    assert!(
        saved.into_iter().all(|s| s.into_inner() == first),
        "every attempt returns the winner"
    );
    let history = stores[1]
        .messages(&chat.id, HistoryPage::After(0), 100)
        .await
        .unwrap();
    assert_eq!(history, vec![first], "exactly one message is stored");
}

/// A chat saved before delivery status has no mark fields: its first mark moves (and counts as
/// moved once), a lower one never moves it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stored_before_delivery_status_gets_its_first_marks() {
    let server = tokio::task::block_in_place(shared);
    let db = fresh_database();
    let store = server.store(&db).await;
    let chat = new_chat(&store).await;
    let raw = mongodb::Client::with_uri_str(server.uri())
        .await
        .expect("client builds");
    let oid = mongodb::bson::oid::ObjectId::parse_str(chat.id.as_str()).expect("an ObjectId");
    let unset = raw
        .database(&db)
        .collection::<mongodb::bson::Document>("chats")
        .update_one(
            mongodb::bson::doc! { "_id": oid },
            mongodb::bson::doc! { "$unset": { "deliveredToUser": "", "deliveredToStaff": "" } },
        )
        .await
        .expect("fields removed");
    assert_eq!(unset.modified_count, 1, "the chat lost its mark fields");
    crate::store_contract::marks_move_forward_only_in(&store, &chat.id).await;
}

/// A save MongoDB writes after the node stopped waiting for it (its reply held past
/// `MONGODB_TIMEOUT_MS`, as a stalled server does) was answered `UNAVAILABLE` and never
/// delivered: the `clientMessageId` retry found it and emitted nothing, so a connected chat
/// partner never got it (the chaos soak's `exactly-once`, seed 11). Now the attempt settles its
/// outcome before it answers: it finds its message once the server answers, says `ok` (PROTOCOL:
/// an `UNAVAILABLE` message reaches nobody) and emits `message:new`, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_lands_after_its_timeout_is_still_delivered_live_once() {
    let server = tokio::task::block_in_place(MongoServer::start);
    let proxy =
        crate::helpers::slow_mongo::HoldingProxy::start(server.port, Duration::from_millis(2500))
            .await;
    let uri = proxy.uri();
    let node = TestNode::start_with(|c| {
        c.mongodb_uri = Some(uri.into());
        c.mongodb_database = "late".into();
        c.mongodb_timeout = Duration::from_millis(1000);
    })
    .await;
    until_readyz(&node, 200).await;
    let (user_token, staff_token) = (node.token("u1", Role::User), node.token("s1", Role::Admin));
    let chat = node.open_chat(&user_token).await;
    let sender = node.socket("u1", Role::User).await;
    let staff = node.socket("s1", Role::Admin).await;
    until_socket_registered(&node, "u1", &user_token).await;
    until_socket_registered(&node, "s1", &staff_token).await;

    proxy.hold_next_message_insert();
    let send = json!({ "chatId": chat, "message": { "content": "late" }, "clientMessageId": "c1" });
    let ack = sender.ack("message:send", send.clone()).await;
    assert_eq!(ack["ok"], true, "the save landed after the timeout: {ack}");

    let new = staff
        .try_event("message:new", Duration::from_secs(15))
        .await
        .expect("the message MongoDB saved after the timeout reaches the chat live");
    assert_eq!(new["message"]["content"], "late", "{new}");
    assert_eq!(new["message"]["id"], ack["message"]["id"], "{new}");
    let retry = sender.ack("message:send", send).await;
    assert_eq!(retry["message"]["id"], new["message"]["id"], "{retry}");
    assert!(
        staff
            .try_event("message:new", Duration::from_millis(1000))
            .await
            .is_none(),
        "delivered once"
    );
    node.stop().await;
}
