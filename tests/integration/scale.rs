//! Issue 28's deaf recovered sockets: a client told `recovered` (its `CONNECT` answer carries
//! its old `pid`) must hear its live events from then on. A recovering socket's broadcasts are
//! held until its replay is written; anything the node waits for between that answer and the
//! release (a Redis round trip, the queue of other replays on the tail cache) is time in which
//! a client that believes itself recovered hears nothing. At 30,000 clients those waits grew
//! past the benchmark's tail. Here the survivor reaches Redis through a proxy that holds back,
//! for 4 s, the second command naming the resumed session (the first is the handshake's read
//! of it; the second, its hand-over to the new socket): a slow Redis at the worst moment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::{ProcessNode, RedisServer, Sio, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn seq(event: &Value) -> u64 {
    event["message"]["seq"]
        .as_u64()
        .expect("a message with a seq")
}

#[tokio::test]
async fn a_recovered_socket_hears_live_events_while_redis_is_slow() {
    let redis = RedisServer::start().await;
    let data = Arc::new(tempfile::tempdir().expect("temp dir"));
    let stall = Arc::new(std::sync::Mutex::new(None::<(String, usize)>));
    let proxy = StallingProxy::start(redis.port, stall.clone()).await;
    let survivor = TestNode::cluster(data.clone(), &proxy, "survivor").await;
    let mut doomed = ProcessNode::start(data.path(), &redis.url(), "doomed").await;
    let alice = survivor.token("alice", Role::User);
    let sock = Sio::connect(doomed.port, Some(&alice))
        .await
        .expect("connects");
    let pid = sock.pid.clone().expect("the CONNECT answer carries a pid");
    let chat = survivor.open_chat(&alice).await;
    let admin = survivor.socket("a1", Role::Admin).await;
    let send = |content: &str| json!({ "chatId": chat, "message": { "content": content } });
    assert_eq!(admin.ack("message:send", send("before")).await["ok"], true);
    assert_eq!(seq(&sock.event("message:new").await), 1);
    let offset = sock.last_offset().expect("message:new carries its offset");
    doomed.kill();
    let gap = admin.ack("message:send", send("gap")).await;
    let gap_seq = gap["message"]["seq"].as_u64().expect("saved");

    // The first command naming the session is the handshake's read of it; the second, its
    // hand-over to the new socket: held back.
    *stall.lock().unwrap() = Some((pid.clone(), 1));
    let paused_at = Instant::now();
    let back = Sio::connect_with(
        survivor.port,
        Some(json!({ "token": alice, "pid": pid, "offset": offset })),
    )
    .await
    .expect("reconnects");
    assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "recovered");
    let answered = paused_at.elapsed();
    // A typing indicator is not logged (nothing to write) and reaches this node's sockets
    // before Redis is asked to publish it: a socket that is listening gets it at once.
    admin.emit("user:typing:start", json!({ "chatId": chat }));
    let typing = back
        .try_event("user:typing", Duration::from_millis(1500))
        .await;
    assert!(
        typing.is_some(),
        "recovered (answer after {answered:?}) but deaf: no live event within 1.5 s \
         (the proxy holds Redis back for 4 s)"
    );
    // And its replay came first, once.
    let replayed: Vec<u64> = back.drain("message:new").iter().map(seq).collect();
    assert_eq!(replayed, vec![gap_seq], "the missed message, once");
}

/// A TCP proxy to Redis that, once given a needle and a count `n`, holds back (4 s) the chunk
/// after the first `n` a node sends containing the needle, and with it everything after it on
/// that connection, as a slow Redis would.
struct StallingProxy;

impl StallingProxy {
    async fn start(redis_port: u16, pid: Arc<std::sync::Mutex<Option<(String, usize)>>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (pid, seen) = (pid.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let want = pid.lock().unwrap().clone();
                        let hit = want.as_ref().is_some_and(|(p, _)| {
                            buf[..n].windows(p.len()).any(|w| w == p.as_bytes())
                        });
                        if hit
                            && want.is_some_and(|(_, skip)| {
                                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == skip
                            })
                        {
                            tokio::time::sleep(Duration::from_secs(4)).await;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("redis://127.0.0.1:{port}")
    }
}

/// The other side of the bound: a recovered socket whose replay cannot be read in time is
/// not left held. Its transport is closed (socket.io-client reconnects by itself) and, since the
/// session was not handed over, its next attempt with the same `pid` and offset is recovered
/// with everything it missed.
#[tokio::test]
async fn a_replay_that_cannot_be_read_closes_the_transport_and_the_retry_recovers() {
    let redis = RedisServer::start().await;
    let data = Arc::new(tempfile::tempdir().expect("temp dir"));
    let stall = Arc::new(std::sync::Mutex::new(None::<(String, usize)>));
    let proxy = StallingProxy::start(redis.port, stall.clone()).await;
    let survivor = TestNode::cluster(data.clone(), &proxy, "survivor").await;
    let mut doomed = ProcessNode::start(data.path(), &redis.url(), "doomed").await;
    let alice = survivor.token("alice", Role::User);
    let sock = Sio::connect(doomed.port, Some(&alice))
        .await
        .expect("connects");
    let pid = sock.pid.clone().expect("the CONNECT answer carries a pid");
    let chat = survivor.open_chat(&alice).await;
    let admin = survivor.socket("a1", Role::Admin).await;
    let send = |content: &str| json!({ "chatId": chat, "message": { "content": content } });
    assert_eq!(admin.ack("message:send", send("before")).await["ok"], true);
    assert_eq!(seq(&sock.event("message:new").await), 1);
    let offset = sock.last_offset().expect("message:new carries its offset");
    doomed.kill();
    let gap = admin.ack("message:send", send("gap")).await;
    let gap_seq = gap["message"]["seq"].as_u64().expect("saved");

    // The replay's log read (the survivor's first XRANGE) is held back past the read's bound.
    *stall.lock().unwrap() = Some(("XRANGE".to_owned(), 0));
    let auth = json!({ "token": alice, "pid": pid, "offset": offset });
    let first = Sio::connect_with(survivor.port, Some(auth.clone()))
        .await
        .expect("reconnects");
    assert_eq!(first.pid.as_deref(), Some(pid.as_str()));
    assert!(
        first.closed(Duration::from_secs(10)).await,
        "a replay that cannot be read closes the transport"
    );
    let retry = Sio::connect_with(survivor.port, Some(auth))
        .await
        .expect("reconnects again");
    assert_eq!(
        retry.pid.as_deref(),
        Some(pid.as_str()),
        "the retry is recovered: the session was kept"
    );
    retry.ack("joinUserRoom", json!("alice")).await;
    let replayed: Vec<u64> = retry.drain("message:new").iter().map(seq).collect();
    assert_eq!(replayed, vec![gap_seq], "the missed message, once");
}

/// How many `chat_partners` store reads the node has made.
fn partner_reads(node: &TestNode) -> u64 {
    node.state
        .metrics
        .store_operation(switchboard::store::StoreOp::ChatPartners)
        .duration
        .get_sample_count()
}

/// Issue 28: when 30,000 clients left, every node made a `chat_partners` store query per
/// departing user (for its `user:status` offline), thousands at once. A storm of departures
/// is announced with a few batched reads instead, and every departure is still announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_departures_reads_chat_partners_in_batches() {
    const USERS: usize = 60;
    // The agent opens every chat: a REST budget for that.
    let node = TestNode::start_with(|c| c.rate_limit_per_sec = 1000).await;
    let agent = node.token("agent", Role::Admin);
    let mut users = Vec::new();
    for i in 0..USERS {
        let id = format!("leaver{i}");
        let (status, _) = node
            .call(
                reqwest::Method::POST,
                "/api/chats",
                Some(&agent),
                Some(json!({ "participantId": id })),
            )
            .await;
        assert_eq!(status, 201);
        let tok = node.token(&id, Role::User);
        users.push(Sio::connect(node.port, Some(&tok)).await.expect("connects"));
    }
    let watcher = node.socket("agent", Role::Admin).await;
    let before = partner_reads(&node);
    for u in &users {
        u.close();
    }
    // Every departure is announced.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut offline = std::collections::HashSet::new();
    while offline.len() < USERS && Instant::now() < deadline {
        if let Some(e) = watcher
            .try_event("user:status", Duration::from_millis(500))
            .await
            && e["status"] == "offline"
        {
            offline.insert(e["userId"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(offline.len(), USERS, "every departure announced once");
    let reads = partner_reads(&node) - before;
    assert!(
        reads <= (USERS / 6) as u64,
        "{reads} chat_partners reads for {USERS} departures"
    );
}
