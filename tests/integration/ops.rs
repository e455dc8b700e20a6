//! The real `switchboard` binary as production runs it: JSON logs that carry ids but never a
//! token or a message body, and the SIGTERM drain (readiness 503 first, sockets closed, acked
//! messages kept, exit 0 within the grace period).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::Config;
use switchboard::auth::Keys;
use switchboard::domain::Role;
use tokio::time::Instant;

use crate::helpers::{ConnectError, Sio, eventually};

const SECRET: &str = "ops-integration-secret-0123456789";

/// The `switchboard` binary running in a child process, with its log lines collected.
struct Binary {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Binary {
    /// Starts the binary on a free port with `data` as DATA_DIR, JSON logs and `env` on top;
    /// returns once it logs that it listens.
    async fn start(data: &Path, env: &[(&str, &str)]) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATA_DIR", data)
            .env("JWT_SECRET", SECRET)
            .env("LOG_FORMAT", "json")
            .env("CORS_ORIGINS", "*")
            .env_remove("METRICS_PORT")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("switchboard starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut node = Binary {
            child,
            lines,
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.port == 0 {
            assert!(
                Instant::now() < deadline,
                "no 'listening' line within 30 s: {:?}",
                node.lines()
            );
            assert!(
                node.child.try_wait().unwrap().is_none(),
                "switchboard exited: {:?}",
                node.lines()
            );
            node.port = node
                .lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["message"] == "listening")
                .and_then(|l| l["addr"].as_str()?.rsplit(':').next()?.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `within` for the process to exit.
    async fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = Mutex::new(&mut self.child);
        let status = Mutex::new(None);
        eventually(within, || async {
            let exit = child.lock().unwrap().try_wait().expect("wait on child");
            *status.lock().unwrap() = exit;
            exit.is_some()
        })
        .await;
        status.into_inner().unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave its node running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Mints tokens the way a node with [`SECRET`] verifies them.
fn token(data: &Path, id: &str, role: Role) -> String {
    let mut cfg = Config::for_tests(data.to_owned());
    cfg.jwt_secret = Some(SECRET.into());
    let keys = Keys::load(&cfg).expect("keys");
    keys.verifier
        .issue(
            id,
            role,
            Some(&format!("{id} name")),
            Duration::from_secs(3600),
        )
        .expect("HS256 token")
}

async fn open_chat(http: &reqwest::Client, node: &Binary, token: &str) -> String {
    let res = http
        .post(node.url("/api/chats"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("POST /api/chats");
    assert_eq!(res.status().as_u16(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every saved message id of a chat, through the REST history.
async fn saved_ids(http: &reqwest::Client, node: &Binary, token: &str, chat: &str) -> Vec<String> {
    let (mut ids, mut after) = (Vec::new(), 0);
    loop {
        let url = node.url(&format!(
            "/api/chats/{chat}/messages?afterSeq={after}&limit=100"
        ));
        let page: Value = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = page["messages"].as_array().expect("messages").clone();
        for m in &messages {
            ids.push(m["id"].as_str().unwrap().to_owned());
            after = m["seq"].as_u64().unwrap();
        }
        if page["hasMore"] != true || messages.is_empty() {
            return ids;
        }
    }
}

/// Sends `content` to `chat` as a long-polling Socket.IO client (raw Engine.IO requests) and
/// returns the body of the poll that carried the ack.
async fn message_over_long_polling(
    http: &reqwest::Client,
    node: &Binary,
    token: &str,
    chat: &str,
    content: &str,
) -> String {
    let base = node.url("/socket.io/?EIO=4&transport=polling");
    let open = http.get(&base).send().await.unwrap().text().await.unwrap();
    let open: Value = serde_json::from_str(&open[1..]).expect("the open packet");
    let url = format!("{base}&sid={}", open["sid"].as_str().unwrap());
    let post = |body: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let res = http.post(&url).body(body).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200);
        }
    };
    post(format!("40{}", json!({ "token": token }))).await;
    // The CONNECT answer, after any ping (`2`, answered) a loaded machine lets through first.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let polled = http.get(&url).send().await.unwrap().text().await.unwrap();
        if polled.split('\u{1e}').any(|p| p.starts_with("40")) {
            break;
        }
        assert!(
            polled.split('\u{1e}').all(|p| p == "2"),
            "CONNECT answer: {polled}"
        );
        assert!(Instant::now() < deadline, "no CONNECT answer");
        post("3".to_owned()).await;
    }
    let event = json!(["message:send", { "chatId": chat, "message": { "content": content } }]);
    post(format!("421{event}")).await;
    // The ack may come after other packets (a `message:new` to this user's own room first).
    let mut seen = String::new();
    while Instant::now() < deadline {
        let polled = http.get(&url).send().await.unwrap().text().await.unwrap();
        seen.push_str(&polled);
        if polled.split('\u{1e}').any(|p| p.starts_with("431")) {
            return seen;
        }
        if polled.split('\u{1e}').any(|p| p == "2") {
            post("3".to_owned()).await;
        }
    }
    panic!("no ack over long-polling: {seen}");
}

#[tokio::test]
async fn json_logs_carry_ids_and_never_a_token_or_a_message_body() {
    // Arrange: the most verbose level, where leaks would show.
    let data = tempfile::tempdir().unwrap();
    let mut node = Binary::start(
        data.path(),
        &[("RUST_LOG", "debug"), ("NODE_ID", "log-node")],
    )
    .await;
    let http = reqwest::Client::new();
    let token = token(data.path(), "log-user", Role::User);
    let chat = open_chat(&http, &node, &token).await;
    let sio = Sio::connect(node.port, Some(&token))
        .await
        .expect("socket connects");

    // Act: a message, a malformed one (its error quotes the payload to the client), a REST one.
    // Generous waits: other tests load the machine too.
    let within = Duration::from_secs(30);
    let ack = sio
        .try_ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "socket-body-7f3a9c" } }),
            within,
        )
        .await;
    let ack = ack.unwrap_or_else(|| panic!("message:send not acked; logs: {:#?}", node.lines()));
    assert_eq!(ack["ok"], true, "{ack}");
    let refused = sio
        .try_ack(
            "message:send",
            json!({ "chatId": chat, "message": "malformed-body-5b2e" }),
            within,
        )
        .await;
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "malformed message:send not acked; logs: {:#?}",
            node.lines()
        )
    });
    assert_eq!(refused["error"]["code"], "VALIDATION", "{refused}");
    let res = http
        .post(node.url(&format!("/api/chats/{chat}/messages")))
        .bearer_auth(&token)
        .json(&json!({ "message": { "content": "rest-body-91c4" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    // Over long-polling too: Engine.IO's payload encoder (`engineioxide_core`) logs every
    // packet it sends at `debug`, so the ack carrying the message would show there.
    let polled = message_over_long_polling(&http, &node, &token, &chat, "polled-body-c8d1").await;
    assert!(
        polled.contains("polled-body-c8d1"),
        "the polling ack: {polled}"
    );
    sio.close();
    node.sigterm();
    assert!(
        node.exited(Duration::from_secs(30))
            .await
            .is_some_and(|s| s.success()),
        "node exits 0"
    );

    // Assert
    let lines = node.lines();
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let all = lines.join("\n");
    let signature = token.rsplit('.').next().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    for secret in [
        token.as_str(),
        signature,
        claims,
        SECRET,
        "socket-body-7f3a9c",
        "malformed-body-5b2e",
        "rest-body-91c4",
        "polled-body-c8d1",
    ] {
        assert!(!all.contains(secret), "the logs contain {secret:?}:\n{all}");
    }
    let connected = entries
        .iter()
        .find(|e| e["message"] == "socket connected")
        .expect("a 'socket connected' line");
    assert_eq!(connected["socket_id"], sio.sid.as_str());
    assert_eq!(connected["user_id"], "log-user");
    assert_eq!(connected["node"], "log-node");
    let handled: Vec<&Value> = entries
        .iter()
        .filter(|e| e["message"] == "event handled")
        .collect();
    let handled: Vec<&Value> = handled
        .into_iter()
        .filter(|e| e["span"]["socket_id"] == sio.sid.as_str())
        .collect();
    assert_eq!(handled.len(), 2, "one line per event: {handled:?}");
    for line in handled {
        let span = &line["span"];
        assert_eq!(span["socket_id"], sio.sid.as_str(), "{line}");
        assert_eq!(span["user_id"], "log-user", "{line}");
        assert_eq!(span["node"], "log-node", "{line}");
        assert_eq!(span["event"], "message:send", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_fifty_clients_and_keeps_every_acked_message() {
    // Arrange: 50 users, each with a chat and a socket.
    const CLIENTS: usize = 50;
    const GRACE: Duration = Duration::from_secs(15);
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("SHUTDOWN_GRACE_SECS", "15"),
        ("DRAIN_DELAY_SECS", "1"),
        ("RATE_LIMIT_PER_SEC", "10000"),
        ("RUST_LOG", "info"),
    ];
    let mut node = Binary::start(data.path(), &env).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let token = token(data.path(), &format!("drain-{i}"), Role::User);
        let chat = open_chat(&http, &node, &token).await;
        let sio = Arc::new(
            Sio::connect(node.port, Some(&token))
                .await
                .expect("socket connects"),
        );
        clients.push((sio, chat, token));
    }
    // Every client sends acked messages back to back until its socket is closed.
    let acked = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<Value>::new()));
    let senders: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, (sio, chat, _))| {
            let (sio, chat, acked, sent, failed) = (sio.clone(), chat.clone(), acked.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let payload = json!({ "chatId": chat, "message": { "content": format!("drain {n}") }, "clientMessageId": format!("c{i}-{n}") });
                    match sio.try_ack("message:send", payload, GRACE).await {
                        Some(ack) if ack["ok"] == true => acked.lock().unwrap().push((i, ack["message"]["id"].as_str().unwrap().to_owned())),
                        Some(ack) => failed.lock().unwrap().push(ack),
                        None => return,
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let flowing = eventually(Duration::from_secs(30), || async {
        acked.lock().unwrap().len() >= CLIENTS * 2
    })
    .await;
    assert!(flowing, "clients got no acks");
    // Readiness, polled throughout.
    let readiness = Arc::new(Mutex::new(Vec::<u16>::new()));
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = {
        let (http, url, readiness, stop) = (
            http.clone(),
            node.url("/readyz"),
            readiness.clone(),
            stop_polling.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(res) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                    readiness.lock().unwrap().push(res.status().as_u16());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let wait_for_status = |status: u16| {
        let readiness = readiness.clone();
        async move {
            let answered = eventually(Duration::from_secs(10), || async {
                readiness.lock().unwrap().contains(&status)
            })
            .await;
            assert!(answered, "/readyz never answered {status}");
        }
    };
    wait_for_status(200).await;
    let in_flight_before = sent.load(Ordering::Relaxed);

    // Act
    let signalled = Instant::now();
    node.sigterm();

    // Assert: readiness turns 503 while the node still serves, and it refuses new sockets.
    wait_for_status(503).await;
    // A new Engine.IO session is refused at the HTTP layer (a `connect_error` would be final
    // for socket.io-client); a request within a session is not.
    let handshake = http
        .get(node.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .expect("the draining node answers");
    assert_eq!(handshake.status(), 503, "a new session while draining");
    assert_eq!(handshake.headers()["retry-after"], "1");
    let within = http
        .get(node.url("/socket.io/?EIO=4&transport=polling&sid=unknown"))
        .send()
        .await
        .expect("the draining node answers");
    assert_ne!(within.status(), 503, "a request naming a session passes on");
    let late = token(data.path(), "late-comer", Role::User);
    match Sio::connect(node.port, Some(&late)).await {
        Err(ConnectError::Refused(m)) => assert!(m.starts_with("UNAVAILABLE"), "{m}"),
        Err(ConnectError::Transport(_)) => {}
        Ok(_) => panic!("a draining node accepted a new socket"),
    }
    // Every client is disconnected, and every sender stops, within the grace period.
    for (i, (sio, _, _)) in clients.iter().enumerate() {
        assert!(
            sio.closed(GRACE.saturating_sub(signalled.elapsed())).await,
            "client {i} was not disconnected"
        );
    }
    for s in senders {
        tokio::time::timeout(GRACE, s)
            .await
            .expect("sender stops")
            .unwrap();
    }
    let status = node.exited(GRACE.saturating_sub(signalled.elapsed())).await;
    let took = signalled.elapsed();
    stop_polling.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?} within {GRACE:?}; logs: {:?}",
        node.lines()
    );
    assert!(took < GRACE, "drain took {took:?}");
    assert!(
        sent.load(Ordering::Relaxed) > in_flight_before,
        "messages were still being sent during the drain"
    );
    assert!(
        failed.lock().unwrap().is_empty(),
        "refused sends: {:?}",
        failed.lock().unwrap()
    );
    let drained = node
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "drained")
        .expect("a 'drained' log line");
    assert_eq!(
        drained["in_flight"], 0,
        "events were still being handled when the node exited"
    );

    // Every acked message is in the store, as a restarted node on the same DATA_DIR tells.
    let restarted = Binary::start(data.path(), &[]).await;
    let acked = acked.lock().unwrap().clone();
    for (i, (_, chat, token)) in clients.iter().enumerate() {
        let saved = saved_ids(&http, &restarted, token, chat).await;
        for (_, id) in acked.iter().filter(|(c, _)| *c == i) {
            assert!(
                saved.contains(id),
                "acked message {id} of client {i} is not in the store"
            );
        }
    }
    assert!(acked.len() >= CLIENTS * 2);
    let polls = readiness.lock().unwrap();
    eprintln!(
        "drain: {} messages acked ({} sent before SIGTERM), exit after {took:?}, /readyz: {} x 200 then {} x 503",
        acked.len(),
        in_flight_before,
        polls.iter().filter(|s| **s == 200).count(),
        polls.iter().filter(|s| **s == 503).count()
    );
}
