//! Issue 25, items 2 (the application part), 3 and 7, tried as an attacker meets them, over real
//! sockets to real nodes: handshakes a client hangs up on, history pages and `chat:sync`
//! answers of big messages, resumes past the per-user budget, the recovery log and the tail
//! cache under a burst of big messages, and one user's messages across several sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::domain::Role;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::quiet::no_more;
use crate::helpers::{Sio, TestNode, WAIT, eventually};

/// A counter of the node's Prometheus text, summed over the lines that start with `prefix`.
fn metric(node: &TestNode, prefix: &str) -> f64 {
    node.state
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Opens an Engine.IO session over WebSocket, sends `CONNECT` with `token` and hangs up at
/// once (a close frame right behind it, then the TCP connection dropped), reading nothing.
async fn hang_up_over_websocket(port: u16, token: &str) {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let open = tokio::time::timeout(WAIT, ws.next()).await;
    assert!(
        matches!(&open, Ok(Some(Ok(Message::Text(t)))) if t.starts_with('0')),
        "open packet: {open:?}"
    );
    let connect = format!("40{}", json!({ "token": token }));
    ws.feed(Message::text(connect)).await.expect("feed");
    ws.feed(Message::Close(None)).await.expect("feed close");
    ws.flush().await.ok();
    drop(ws);
}

/// Opens an Engine.IO session over long-polling, then POSTs `CONNECT` with `token` and the
/// Engine.IO close packet in one body: the session ends before the answer could be polled.
async fn hang_up_over_polling(node: &TestNode, token: &str) {
    let base = node.url("/socket.io/?EIO=4&transport=polling");
    let open = node
        .http
        .get(&base)
        .send()
        .await
        .expect("open")
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    let sid = body["sid"].as_str().unwrap();
    let payload = format!("40{}\u{1e}1", json!({ "token": token }));
    let res = node
        .http
        .post(format!("{base}&sid={sid}"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(payload)
        .send()
        .await
        .expect("post");
    assert!(res.status().is_success(), "POST: {}", res.status());
}

/// Item 3: clients that hang up during the handshake, more than `MAX_SOCKETS_PER_USER` times,
/// leave the user's socket count as it was: the user is not present (a staff message to them
/// stays `sent`), and can still open every socket the limit allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshakes_hung_up_on_leave_no_socket_counted() {
    const MAX: u32 = 3;
    let node = TestNode::start_with(|c| c.max_sockets_per_user = MAX).await;
    let chat = node.staff_chat("hang-admin", "hang-user").await;
    let token = node.token("hang-user", Role::User);
    let accepted = metric(&node, "switchboard_connections_total{outcome=\"accepted\"");

    let hang_ups = 2 * (MAX as usize + 2);
    for i in 0..hang_ups {
        if i % 2 == 0 {
            hang_up_over_websocket(node.port, &token).await;
        } else {
            hang_up_over_polling(&node, &token).await;
        }
    }
    // Every one of them passed the middleware (the race is in what happens after), and every
    // socket that did get in has been taken out again.
    let settled = eventually(Duration::from_secs(10), || async {
        metric(&node, "switchboard_connections_total{outcome=\"accepted\"")
            >= accepted + hang_ups as f64
            && node.state.metrics.sockets_connected.get() == 0
    })
    .await;
    let staff = node.socket("hang-admin", Role::Admin).await;
    let ack = staff
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "are you there?" } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["message"]["status"], "sent",
        "the user is not here: {ack}"
    );
    no_more(
        &staff,
        "hang-admin",
        "message:delivered",
        &[&node],
        "no delivery to a user who hung up",
    )
    .await;
    assert!(
        !node.state.user_limits.has_socket_here("hang-user"),
        "the user's socket count is left over from {hang_ups} hang-ups (settled: {settled}, \
         gauge: {})",
        node.state.metrics.sockets_connected.get()
    );

    let mut sockets = Vec::new();
    for _ in 0..MAX {
        sockets.push(
            Sio::connect(node.port, Some(&token))
                .await
                .expect("the user connects up to MAX_SOCKETS_PER_USER"),
        );
    }
}

/// A text of 5,000 control characters: ~30 KB of JSON (`\u0001` is six bytes escaped).
fn control_text(tag: u32) -> String {
    format!("{tag}{}", "\u{1}".repeat(4_990))
}

/// Sends `n` big messages to `chat` from `socket`, each acked.
async fn send_big(socket: &Sio, chat: &str, n: u32) {
    for i in 0..n {
        let ack = socket
            .ack(
                "message:send",
                json!({ "chatId": chat, "message": { "content": control_text(i) } }),
            )
            .await;
        assert_eq!(ack["ok"], true, "message {i}: {ack}");
    }
}

/// The seqs of a page's messages.
fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// Item 2: with `PAGE_MAX_BYTES` at 100 KB, a history page (REST, both directions) and a
/// `chat:sync` answer of ~30 KB messages stop under the cap with `hasMore`, and paging on
/// returns every message once, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_of_big_messages_stay_under_the_byte_cap_and_continue_without_gaps() {
    const CAP: usize = 100_000;
    const N: u32 = 12;
    let node = TestNode::start_with(|c| c.page_max_bytes = CAP).await;
    let chat = node.staff_chat("page-admin", "page-user").await;
    let admin = node.socket("page-admin", Role::Admin).await;
    send_big(&admin, &chat, N).await;
    let token = node.token("page-user", Role::User);
    let all: Vec<u64> = (1..=u64::from(N)).collect();

    // REST, oldest first after a seq.
    let mut got: Vec<u64> = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/chats/{chat}/messages?afterSeq={after}&limit=100");
        let res = node
            .http
            .get(node.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.len() <= CAP, "a REST page of {} bytes", text.len());
        let page: Value = serde_json::from_str(&text).unwrap();
        let s = seqs(&page);
        assert!(!s.is_empty(), "a page carries at least one message");
        got.extend(&s);
        after = *s.last().unwrap();
        if page["hasMore"] == false {
            break;
        }
        assert!(got.len() < all.len(), "hasMore true after the last message");
    }
    assert_eq!(got, all, "oldest first: every message once, in order");

    // REST, newest first, then before the oldest seen.
    let mut got: Vec<u64> = Vec::new();
    let mut path = format!("/api/chats/{chat}/messages?limit=100");
    loop {
        let res = node
            .http
            .get(node.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let text = res.text().await.unwrap();
        assert!(text.len() <= CAP, "a REST page of {} bytes", text.len());
        let page: Value = serde_json::from_str(&text).unwrap();
        let s = seqs(&page);
        got.extend(&s);
        if page["hasMore"] == false {
            break;
        }
        path = format!(
            "/api/chats/{chat}/messages?beforeSeq={}&limit=100",
            s.last().unwrap()
        );
    }
    got.reverse();
    assert_eq!(got, all, "newest first: every message once");

    // chat:sync over the socket.
    let user = node.socket("page-user", Role::User).await;
    let mut got: Vec<u64> = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let ack = user
            .ack(
                "chat:sync",
                json!({ "chatId": chat, "afterSeq": after, "limit": 500 }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{}", &ack.to_string()[..200]);
        let bytes = ack.to_string().len();
        assert!(bytes <= CAP, "a chat:sync answer of {bytes} bytes");
        let s = seqs(&ack);
        assert!(!s.is_empty());
        got.extend(&s);
        after = *s.last().unwrap();
        pages += 1;
        if ack["hasMore"] == false {
            break;
        }
    }
    assert_eq!(got, all, "chat:sync: every message once, in order");
    assert!(pages > 1, "the cap split the answer");
}

/// Item 2: with `RECOVERY_RESUMES_PER_MIN` at 2, a user's first two resumes recover their
/// session and replay what they missed; the third gets a new session (another `pid`) and no
/// replay, and is counted as `rate_limited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resumes_past_the_per_user_budget_are_not_replayed() {
    let node = TestNode::start_with(|c| c.recovery_resumes_per_min = 2).await;
    let chat = node.staff_chat("resume-admin", "resume-user").await;
    let admin = node.socket("resume-admin", Role::Admin).await;
    let token = node.token("resume-user", Role::User);
    let mut sock = node.socket("resume-user", Role::User).await;
    let pid = sock.pid.clone().expect("a pid");

    for round in 0..3 {
        let offset = sock.last_offset();
        sock.cut();
        assert!(
            eventually(WAIT, || async {
                !node.state.user_limits.has_socket_here("resume-user")
            })
            .await,
            "the cut socket is gone"
        );
        let sent = admin
            .ack(
                "message:send",
                json!({ "chatId": chat, "message": { "content": format!("gap {round}") } }),
            )
            .await;
        assert_eq!(sent["ok"], true, "{sent}");
        let mut auth = json!({ "token": token, "pid": pid });
        if let Some(o) = offset {
            auth["offset"] = json!(o);
        }
        let back = Sio::connect_with(node.port, Some(auth))
            .await
            .expect("connects");
        back.ack("joinUserRoom", json!("resume-user")).await;
        let replayed: Vec<String> = back
            .drain("message:new")
            .iter()
            .map(|e| {
                e["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if round < 2 {
            assert_eq!(
                back.pid.as_deref(),
                Some(pid.as_str()),
                "resume {round}: recovered"
            );
            assert_eq!(
                replayed,
                [format!("gap {round}")],
                "resume {round}: the missed message"
            );
        } else {
            assert_ne!(
                back.pid.as_deref(),
                Some(pid.as_str()),
                "resume {round}: past the budget, a new session"
            );
            assert!(
                replayed.is_empty(),
                "resume {round}: nothing replayed: {replayed:?}"
            );
            assert_eq!(
                metric(
                    &node,
                    "switchboard_recovery_attempts_total{outcome=\"rate_limited\""
                ),
                1.0
            );
        }
        sock = back;
    }
}

/// The recovery log's size summed in Redis itself (64 + every field of every entry, as the
/// budget counts it), by a script over the whole stream.
fn redis_log_bytes(port: u16) -> u64 {
    let script = "local t = 0 for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do \
                  t = t + 64 for i = 2, #e[2], 2 do t = t + #e[2][i] end end return t";
    crate::helpers::redis::cli(port, &["EVAL", script, "1", "{sb}:rlog"])
        .trim()
        .parse()
        .expect("a number from redis-cli")
}

/// The embedded recovery log's size, read from its SQLite file in `dir` (every entry, summed).
async fn embedded_log_bytes(dir: &std::path::Path) -> u64 {
    use switchboard::recovery::{EmbeddedRecovery, Offset, RecoveryBackend};
    let log = EmbeddedRecovery::open(dir).expect("opens recovery.db");
    let entries = log
        .read(Offset { ms: 0, seq: 0 }, None, 1_000_000)
        .await
        .expect("reads the log");
    entries.iter().map(|e| e.bytes()).sum()
}

/// Item 7, single node: under a burst of 30 messages of ~30 KB (about 3.5 times the budget),
/// the embedded log is trimmed to `RECOVERY_LOG_MAX_BYTES` within a few seconds, and a resume
/// from before the entries the budget dropped is refused (a new session), as one from before
/// the window is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_log_stays_within_its_byte_budget() {
    const BUDGET: u64 = 256 * 1024;
    let node = TestNode::start_with(|c| c.recovery_log_max_bytes = BUDGET).await;
    let chat = node.staff_chat("log-admin", "log-user").await;
    let admin = node.socket("log-admin", Role::Admin).await;
    let user = node.socket("log-user", Role::User).await;
    let pid = user.pid.clone().expect("a pid");
    user.cut();
    assert!(
        eventually(WAIT, || async {
            !node.state.user_limits.has_socket_here("log-user")
        })
        .await
    );
    send_big(&admin, &chat, 30).await;

    let dir = node.data.path().to_owned();
    let trimmed = eventually(Duration::from_secs(5), || {
        let dir = dir.clone();
        async move { embedded_log_bytes(&dir).await <= BUDGET }
    })
    .await;
    let bytes = embedded_log_bytes(&dir).await;
    assert!(
        trimmed,
        "the embedded log holds {bytes} bytes, over its {BUDGET}"
    );

    let token = node.token("log-user", Role::User);
    let back = Sio::connect_with(node.port, Some(json!({ "token": token, "pid": pid })))
        .await
        .expect("connects");
    assert_ne!(
        back.pid.as_deref(),
        Some(pid.as_str()),
        "what it missed was trimmed: a new session"
    );
}

/// Item 7: a resume of a session from before a burst of ~900 KB, with the log's budget above
/// that and the tail's at 256 KB, is refused (a new session, `too_far_behind`) and leaves the
/// node's tail within its budget; it used to load everything after the session's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_of_an_old_session_loads_no_more_than_the_tail_budget() {
    const TAIL: u64 = 256 * 1024;
    let node = TestNode::start_with(|c| {
        c.recovery_log_max_bytes = 16 * 1024 * 1024;
        c.recovery_tail_max_bytes = TAIL;
    })
    .await;
    let chat = node.staff_chat("tail-admin", "tail-user").await;
    let admin = node.socket("tail-admin", Role::Admin).await;
    let user = node.socket("tail-user", Role::User).await;
    let pid = user.pid.clone().expect("a pid");
    user.cut();
    assert!(
        eventually(WAIT, || async {
            !node.state.user_limits.has_socket_here("tail-user")
        })
        .await
    );
    send_big(&admin, &chat, 30).await;

    let token = node.token("tail-user", Role::User);
    let back = Sio::connect_with(node.port, Some(json!({ "token": token, "pid": pid })))
        .await
        .expect("connects");
    // The replay is read after the CONNECT answer; refused there, the session is forgotten
    // and the transport closed (the client reconnects as a new session).
    let refused = eventually(WAIT, || async {
        metric(
            &node,
            "switchboard_recovery_attempts_total{outcome=\"too_far_behind\"",
        ) >= 1.0
    })
    .await;
    let recovery = node.state.recovery.as_ref().expect("recovery on");
    let tail = recovery.tail_bytes();
    assert!(tail <= TAIL, "the tail holds {tail} bytes, over its {TAIL}");
    assert!(refused, "too much to replay: refused");
    assert!(
        back.closed(WAIT).await,
        "its transport is closed: it reconnects as a new session"
    );
    let _ = pid;
}

/// Item 7, cluster: the same burst through a clustered node; the stream in Redis (summed in
/// Redis) is trimmed to `RECOVERY_LOG_MAX_BYTES` within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_log_stays_within_its_byte_budget() {
    const BUDGET: u64 = 256 * 1024;
    let cluster = crate::helpers::Cluster::build(crate::helpers::Topology::Single)
        .named(&["log-node"])
        .each(|c| c.recovery_log_max_bytes = BUDGET)
        .start()
        .await;
    let node = &cluster[0];
    let chat = node.staff_chat("rlog-admin", "rlog-user").await;
    let admin = node.socket("rlog-admin", Role::Admin).await;
    send_big(&admin, &chat, 30).await;
    let port = cluster.port();
    let mut bytes = 0;
    let trimmed = eventually(Duration::from_secs(5), || {
        bytes = redis_log_bytes(port);
        std::future::ready(bytes <= BUDGET)
    })
    .await;
    assert!(trimmed, "the stream holds {bytes} bytes, over its {BUDGET}");
    assert!(bytes > 0, "the newest entries are kept");
}

/// Item 7: one user's messages share one budget over all their sockets: four sockets sending
/// five messages each at `RATE_LIMIT_PER_SEC` 5 (bursts of 10, per socket and per user) get
/// `RATE_LIMITED` past the user's burst, and stay connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_messages_are_limited_across_their_sockets() {
    let node = TestNode::start_with(|c| c.rate_limit_per_sec = 5).await;
    let chat = node.staff_chat("rate-admin", "rate-user").await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(node.socket("rate-user", Role::User).await);
    }
    let started = std::time::Instant::now();
    let (mut ok, mut limited) = (0, 0);
    for round in 0..5 {
        for s in &sockets {
            let ack = s
                .ack(
                    "message:send",
                    json!({ "chatId": chat, "message": { "content": format!("m{round}") } }),
                )
                .await;
            if ack["ok"] == true {
                ok += 1;
            } else {
                assert_eq!(ack["error"]["code"], "RATE_LIMITED", "{ack}");
                limited += 1;
            }
        }
    }
    // The burst, plus what the budget refilled meanwhile.
    let allowed = 10 + (started.elapsed().as_secs_f64() * 5.0).ceil() as u32;
    assert!(
        ok <= allowed,
        "{ok} of 20 messages passed; the user's budget allows {allowed}"
    );
    assert!(limited > 0);
    let ack = sockets[0]
        .ack("user:typing:start", json!({ "chatId": chat }))
        .await;
    assert_eq!(ack["ok"], true, "still connected: {ack}");
}
