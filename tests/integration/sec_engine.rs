//! Engine.IO-level abuse (issue 25, items 2 and 4), driven over real HTTP long-polling:
//! a session that POSTs requests and never reads is closed when its waiting replies pass the
//! byte bound, or when it makes no `GET` for `pingInterval + pingTimeout` however many pongs it
//! POSTs; and the `socketId` shown to staff is not the Engine.IO session id, so it cannot be
//! used to post packets as its user.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::auth::Verifier;
use switchboard::config::JwtAlgorithm;
use switchboard::domain::Role;

use crate::helpers::{ProcessNode, SECRET, TestNode, WAIT, eventually};

/// Engine.IO v4's separator between the packets of one long-polling body.
const SEPARATOR: char = '\u{1e}';

/// A raw Engine.IO v4 long-polling client: every request is one HTTP call the test makes.
struct Polling {
    http: reqwest::Client,
    base: String,
    /// The Engine.IO session id the handshake gave.
    sid: String,
    /// The handshake's `pingInterval` and `pingTimeout`, in ms.
    ping: (u64, u64),
}

impl Polling {
    /// Opens a session (`GET` without `sid`).
    async fn open(port: u16) -> Polling {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling");
        let body = http.get(&base).send().await.unwrap().text().await.unwrap();
        let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open packet"))
            .expect("open packet JSON");
        Polling {
            http,
            sid: open["sid"].as_str().expect("sid").to_owned(),
            ping: (
                open["pingInterval"].as_u64().unwrap(),
                open["pingTimeout"].as_u64().unwrap(),
            ),
            base,
        }
    }

    /// Opens a session and connects to `/` with `token`; returns it and the Socket.IO socket
    /// id the `CONNECT` answer carried (read with the one `GET` this makes).
    async fn connect(port: u16, token: &str) -> (Polling, String) {
        let p = Polling::open(port).await;
        assert_eq!(
            p.post(&format!("40{}", json!({ "token": token }))).await,
            200
        );
        // The first ping may come before the answer: answered, as a client does.
        let deadline = tokio::time::Instant::now() + WAIT;
        let connect = loop {
            assert!(tokio::time::Instant::now() < deadline, "no CONNECT answer");
            let answer = p.get().await;
            let mut connect = None;
            for packet in answer.split(SEPARATOR) {
                if packet == "2" {
                    assert_eq!(p.post("3").await, 200, "pong");
                } else if let Some(body) = packet.strip_prefix("40") {
                    connect = Some(body.to_owned());
                }
            }
            if let Some(connect) = connect {
                break connect;
            }
        };
        let socket_id = serde_json::from_str::<Value>(&connect).unwrap()["sid"]
            .as_str()
            .expect("socket id")
            .to_owned();
        (p, socket_id)
    }

    /// `POST`s `body` to session `sid`; returns the status.
    async fn post_to(&self, sid: &str, body: &str) -> u16 {
        self.http
            .post(format!("{}&sid={sid}", self.base))
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body.to_owned())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    async fn post(&self, body: &str) -> u16 {
        self.post_to(&self.sid, body).await
    }

    /// One `GET` (a long poll: it returns as soon as a packet waits).
    async fn get(&self) -> String {
        let res = tokio::time::timeout(
            WAIT,
            self.http
                .get(format!("{}&sid={}", self.base, self.sid))
                .send(),
        )
        .await
        .expect("poll answered")
        .expect("poll sent");
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_eq!(status, 200, "poll refused: {body}");
        body
    }
}

/// Tokens signed with the test nodes' shared secret (for nodes running as processes).
fn token(id: &str, role: Role) -> String {
    Verifier::hmac(SECRET.as_bytes(), JwtAlgorithm::HS256)
        .issue(id, role, Some(id), Duration::from_secs(3600))
        .expect("token")
}

/// Peak resident memory (`VmHWM`) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// `chat:sync` events handled by the node so far (every outcome), read from `/metrics`.
async fn syncs_handled(http: &reqwest::Client, port: u16) -> u64 {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("switchboard_events_received_total{") && l.contains("event=\"chat:sync\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_polling_session_that_never_reads_its_large_replies_is_closed_and_memory_stays_bounded() {
    let data = tempfile::tempdir().unwrap();
    // The default byte bound (4 MiB); the rate limit out of the way so the load is all replies.
    let node = ProcessNode::start_with_env(data.path(), &[("RATE_LIMIT_PER_SEC", "1000")]).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", node.port);
    let user = token("hoarder", Role::User);

    // A chat of 100 messages of 5,000 control characters: each is ~30 KB as JSON (`\u0001`),
    // so one `chat:sync` page of them is a ~3 MB reply.
    let chat: Value = http
        .post(url("/api/chats"))
        .bearer_auth(&user)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat_id = chat["id"].as_str().expect("chat id").to_owned();
    let content = "\u{1}".repeat(5_000);
    for _ in 0..100 {
        let res = http
            .post(url(&format!("/api/chats/{chat_id}/messages")))
            .bearer_auth(&user)
            .json(&json!({ "message": { "content": content } }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201, "message saved");
    }

    let (attacker, _) = Polling::connect(node.port, &user).await;
    let before = peak_rss_kib(node.pid());
    let handled_before = syncs_handled(&http, node.port).await;

    // Forty page requests in one body, and never a `GET` for their replies: ~120 MB of acks
    // if the node queued them all.
    const SYNCS: u64 = 40;
    let body = (0..SYNCS)
        .map(|id| {
            let args = json!(["chat:sync", { "chatId": chat_id, "afterSeq": 0, "limit": 100 }]);
            format!("42{id}{args}")
        })
        .collect::<Vec<_>>()
        .join(&SEPARATOR.to_string());
    assert_eq!(attacker.post(&body).await, 200);

    // The node closes the session (a POST to it is refused) once its replies pass the bound;
    // without the bound it keeps queueing them, which the peak memory shows.
    let closed = eventually(Duration::from_secs(30), || async {
        attacker.post("3").await == 400
            || peak_rss_kib(node.pid()).saturating_sub(before) > 100 * 1024
    })
    .await
        && attacker.post("3").await == 400;
    // Let the requests still being answered finish (their replies go nowhere) before the peak
    // is read, so it covers the whole load.
    eventually(Duration::from_secs(20), || async {
        syncs_handled(&http, node.port).await >= handled_before + SYNCS
    })
    .await;
    let grown_mib = peak_rss_kib(node.pid()).saturating_sub(before) / 1024;
    eprintln!("peak memory grew by {grown_mib} MiB; session closed: {closed}");

    assert!(closed, "the session that never read its replies was closed");
    assert!(
        grown_mib < 48,
        "{SYNCS} unread ~3 MB replies grew the node's peak memory by {grown_mib} MiB"
    );
}

#[tokio::test]
async fn a_polling_session_that_only_posts_pongs_is_closed_after_ping_interval_plus_timeout() {
    let node = TestNode::start_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.ping_timeout = Duration::from_millis(300);
    })
    .await;
    let user = node.token("ponger", Role::User);

    // A well-behaved polling client: a `GET` always pending, a pong for each ping.
    let (good, _) = Polling::connect(node.port, &user).await;
    assert_eq!(
        good.ping,
        (300, 300),
        "the handshake announces the settings"
    );
    let good = std::sync::Arc::new(good);
    let pongs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let reader = tokio::spawn({
        let (good, pongs) = (good.clone(), pongs.clone());
        async move {
            loop {
                let body = good.get().await;
                for packet in body.split(SEPARATOR) {
                    if packet == "2" {
                        assert_eq!(good.post("3").await, 200, "pong");
                        pongs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        }
    });
    let pongs_now = || pongs.load(std::sync::atomic::Ordering::SeqCst);

    // One that POSTs a pong every 100 ms (more than the server asks for) and never reads.
    let (lurker, _) = Polling::connect(node.port, &user).await;
    let started = tokio::time::Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let refused_after = loop {
        every.tick().await;
        if lurker.post("3").await == 400 {
            break Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(10) {
            break None;
        }
    };
    let refused_after = refused_after.expect("the pong-only session was closed within 10 s");
    // Not before its last `GET` (the CONNECT answer) is `pingInterval + pingTimeout` old.
    assert!(
        refused_after >= Duration::from_millis(500),
        "closed after {refused_after:?}"
    );

    // The reading session is kept: it goes on answering pings (five more, about three times
    // `pingInterval + pingTimeout`) and its POSTs are still accepted.
    let seen = pongs_now();
    assert!(
        eventually(Duration::from_secs(10), || async {
            pongs_now() >= seen + 5
        })
        .await,
        "the reading session kept getting pings ({} pongs)",
        pongs_now()
    );
    assert!(
        !reader.is_finished(),
        "the reading session's polls all answered"
    );
    assert_eq!(good.post("3").await, 200, "the reading session is kept");
    reader.abort();
}

#[tokio::test]
async fn the_socket_id_listed_to_staff_cannot_post_as_its_user() {
    let node = TestNode::start().await;
    let victim_token = node.token("victim", Role::User);
    let chat_id = node.open_chat(&victim_token).await;
    let (victim, socket_id) = Polling::connect(node.port, &victim_token).await;
    assert_ne!(
        socket_id, victim.sid,
        "the Socket.IO socket id is not the Engine.IO session id"
    );

    // What staff see.
    let staff = node.token("nosy-staff", Role::Admin);
    let listed = || async {
        let (status, listed) = node
            .call(Method::GET, "/api/socket/active-users", Some(&staff), None)
            .await;
        assert_eq!(status, 200, "{listed}");
        listed["activeUsers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["userId"] == "victim")
            .cloned()
    };
    // Presence is recorded as the CONNECT is answered, not necessarily before.
    assert!(
        eventually(WAIT, || async { listed().await.is_some() }).await,
        "victim listed"
    );
    let entry = listed().await.unwrap();
    let listed_id = entry["socketId"].as_str().unwrap().to_owned();
    assert_eq!(listed_id, socket_id, "the listed id is the socket's");
    assert_ne!(listed_id, victim.sid, "the session id is never listed");

    // A message posted with the listed id as the session id: refused, nothing saved.
    let forged = format!(
        "42{}",
        json!(["message:send", { "chatId": chat_id, "message": { "content": "forged" } }])
    );
    assert_eq!(
        victim.post_to(&listed_id, &forged).await,
        400,
        "a POST to the listed socket id is refused"
    );
    let poll = victim
        .http
        .get(format!("{}&sid={listed_id}", victim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status().as_u16(), 400, "a GET with it is refused too");

    // The victim's own session still works, and its message is the only one in the chat.
    let own = format!(
        "421{}",
        json!(["message:send", { "chatId": chat_id, "message": { "content": "mine" } }])
    );
    assert_eq!(victim.post(&own).await, 200);
    let acked = eventually(WAIT, || async {
        let body = victim.get().await;
        body.split(SEPARATOR)
            .any(|p| p.starts_with("431[") && p.contains("\"ok\":true"))
    })
    .await;
    assert!(acked, "own message acked");
    let (status, history) = node
        .call(
            Method::GET,
            &format!("/api/chats/{chat_id}/messages"),
            Some(&victim_token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let contents: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(contents, vec!["mine".to_owned()], "no forged message saved");
}

/// Issue 28: a socket whose queue is full (1,024 packets waiting) is closed, not skipped.
/// Skipped, it missed that packet and got the later ones: a hole its client could not see,
/// since its recovery offset moved past it. Closed, its client resumes after the last packet
/// it really got. A long-polling session that does not `GET` is such a socket (the byte bound
/// raised out of the way: the packet bound is the one under test).
#[tokio::test]
async fn a_session_whose_queue_fills_is_closed_not_skipped() {
    const BURST: u64 = 1_100;
    let node = TestNode::start_with(|c| {
        c.socket_queue_bytes = 256 << 20;
        c.rate_limit_per_sec = 100_000;
    })
    .await;
    let alice = node.token("alice", Role::User);
    let chat = node.open_chat(&alice).await;
    let admin = node.socket("a1", Role::Admin).await;
    let (p, _) = Polling::connect(node.port, &alice).await;
    for i in 1..=BURST {
        let ack = admin
            .ack(
                "message:send",
                json!({ "chatId": chat, "message": { "content": format!("m{i}") } }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    // Read what the session has, until it is closed or every message came.
    let mut seqs = Vec::new();
    let mut closed = false;
    while !closed && (seqs.len() as u64) < BURST {
        // A poll that waits past WAIT: nothing more is coming.
        let Ok(res) =
            tokio::time::timeout(WAIT, p.http.get(format!("{}&sid={}", p.base, p.sid)).send())
                .await
        else {
            break;
        };
        let res = res.expect("poll sent");
        if res.status() != 200 {
            closed = true;
            break;
        }
        for packet in res.text().await.unwrap().split(SEPARATOR) {
            if packet == "1" {
                closed = true;
            } else if packet == "2" {
                p.post("3").await;
            } else if let Some(body) = packet.strip_prefix("42")
                && let Ok(Value::Array(args)) = serde_json::from_str::<Value>(body)
                && args[0] == "message:new"
            {
                seqs.push(args[1]["message"]["seq"].as_u64().expect("a seq"));
            }
        }
    }
    let start: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, start, "what the session got has no hole");
    assert!(
        closed,
        "{} of {BURST} messages and the session still open: the rest was skipped",
        seqs.len()
    );
}
