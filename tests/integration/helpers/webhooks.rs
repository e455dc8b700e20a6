//! A real webhook receiver for the tests: `webhook_receiver.py`, which verifies every request
//! with the official `standardwebhooks` library (PyPI, tests/requirements.txt) and records it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use switchboard::Config;
use switchboard::domain::Role;

use super::{eventually, free_port};

/// A secret in the Standard Webhooks form (24 bytes).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another one, for rotations.
pub const NEW_SECRET: &str = "whsec_c2VjcmV0LW51bWJlci10d28tMTIzNDU2Nzg=";

/// The receiver process, on its own port.
pub struct Receiver {
    pub port: u16,
    secret: String,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Receiver {
    /// Starts a receiver verifying with `secret`, answering 200.
    pub async fn start(secret: &str) -> Receiver {
        let mut r = Receiver {
            port: free_port(),
            secret: secret.to_owned(),
            child: None,
            http: reqwest::Client::new(),
        };
        r.up().await;
        r
    }

    /// (Re)starts the process on the same port; what it recorded before is forgotten.
    pub async fn up(&mut self) {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/helpers/webhook_receiver.py"
        );
        let child = Command::new("python3")
            .args([script, &self.port.to_string(), &self.secret])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the webhook receiver");
        self.child = Some(child);
        let url = format!("http://127.0.0.1:{}/received", self.port);
        let http = self.http.clone();
        let up = eventually(Duration::from_secs(20), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(url).send().await.is_ok() }
        })
        .await;
        assert!(
            up,
            "webhook receiver did not start (is `standardwebhooks` installed?)"
        );
    }

    /// Kills the process: the port refuses connections until [`Receiver::up`].
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answers from now on with 200 (`ok`), 500 (`fail`) or 200 after `secs` (`slow`).
    pub async fn mode(&self, mode: &str, secs: u64) {
        self.http
            .post(format!("http://127.0.0.1:{}/control", self.port))
            .json(&json!({ "mode": mode, "slow_secs": secs }))
            .send()
            .await
            .expect("receiver control");
    }

    /// Every request it got, in arrival order.
    pub async fn received(&self) -> Vec<Value> {
        match self
            .http
            .get(format!("http://127.0.0.1:{}/received", self.port))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits until `check` holds over the received requests; returns them.
    pub async fn until(&self, within: Duration, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let (this, check) = (self, &check);
        super::eventually(within, move || async move { check(&this.received().await) }).await;
        self.received().await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// How many acknowledged requests of type `kind` `got` holds.
pub fn count(got: &[Value], kind: &str) -> usize {
    got.iter()
        .filter(|r| r["type"] == kind && r["answered"] == 200)
        .count()
}

/// Long enough for a debug build on a busy two-core machine.
pub const WITHIN: Duration = Duration::from_secs(40);

/// The pledges' grace in these tests (`webhooks/pledges.rs`).
pub const PLEDGE_GRACE_MS: i64 = 2_000;

/// One endpoint, the receiver; retries at most a second apart.
pub fn hooked(c: &mut Config, rx: &Receiver, reminder_secs: u64) {
    // A dead node's pledges are settled within seconds, not the production half minute.
    switchboard::webhooks::pledges::TEST_GRACE_MS
        .store(PLEDGE_GRACE_MS, std::sync::atomic::Ordering::Relaxed);
    c.webhooks.url = Some(rx.url());
    c.webhooks.secret = Some(SECRET.into());
    c.webhooks.max_backoff_secs = 1;
    c.webhooks.timeout_secs = 2;
    c.webhooks.unread_reminder_secs = reminder_secs;
}

/// The ids of acknowledged `message.created`, in the order they were acknowledged, and
/// whether every request of that type came in `seq` order (one in flight per chat).
pub fn created_in_order(got: &[Value]) -> (Vec<String>, bool) {
    let mut acked = Vec::new();
    let mut last_seq = 0;
    let mut ordered = true;
    for r in got.iter().filter(|r| r["type"] == "message.created") {
        let seq = r["data"]["message"]["seq"].as_u64().unwrap_or(0);
        ordered &= seq >= last_seq;
        last_seq = seq;
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        if r["answered"] == 200 && !acked.contains(&id) {
            acked.push(id);
        }
    }
    (acked, ordered)
}

/// Sends `n` messages, lets the receiver misbehave (`bad`: its mode) until the sender has
/// retried a few times, then answers again: every message arrives, acknowledged in `seq` order.
pub async fn delivered_despite(node: &super::TestNode, rx: &Receiver, bad: &str, n: usize) {
    let token = node.token("u1", Role::User);
    let chat = node.open_chat(&token).await;
    let user = node.socket("u1", Role::User).await;
    let mut sent = Vec::new();
    for i in 0..n {
        sent.push(super::send(&user, &chat, &format!("m{i}")).await);
    }
    assert!(
        eventually(WITHIN, || async { retries(node) >= 3 }).await,
        "the {bad} receiver was retried: {}",
        retries(node)
    );
    rx.mode("ok", 0).await;
    let got = all_created_in_order(rx, &sent).await;
    assert!(got.iter().all(|r| r["valid"] == true));
    // Duplicates only under the same id: every request names one of the messages.
    let expected: Vec<String> = sent
        .iter()
        .map(|m| format!("msg_{}", m["id"].as_str().unwrap()))
        .collect();
    assert!(
        got.iter()
            .all(|r| expected.iter().any(|id| r["id"] == id.as_str())),
        "{got:#?}"
    );
}

/// The sender's failed attempts so far (retried later) on the `default` endpoint.
pub fn retries(node: &super::TestNode) -> u64 {
    node.state
        .metrics
        .webhooks
        .outcome("default", "retry")
        .get()
}

/// Waits until every message of `sent` (acks of `message:send`) was acknowledged by `rx`, and
/// checks they came once each, in `seq` order; returns what `rx` received.
pub async fn all_created_in_order(rx: &Receiver, sent: &[Value]) -> Vec<Value> {
    let expected: Vec<String> = sent
        .iter()
        .map(|m| format!("msg_{}", m["id"].as_str().unwrap()))
        .collect();
    let got = rx
        .until(WITHIN, |g| created_in_order(g).0.len() >= expected.len())
        .await;
    let (acked, ordered) = created_in_order(&got);
    assert_eq!(acked, expected, "every message once, in order: {got:#?}");
    assert!(
        ordered,
        "one message of a chat in flight at a time: {got:#?}"
    );
    got
}

/// A staff member (`admin_token`) sends `u1` a report, which `user` (u1's socket) reads;
/// returns the report.
pub async fn report_read_by_u1(
    node: &super::TestNode,
    admin_token: &str,
    user: &super::Sio,
) -> Value {
    let (status, report) = node
        .call(
            reqwest::Method::POST,
            "/api/reports",
            Some(admin_token),
            Some(json!({ "userId": "u1", "title": "T", "message": "M", "status": "Info" })),
        )
        .await;
    assert_eq!(status, 201, "{report}");
    let r = user
        .ack("report:read", json!({ "reportId": report["id"] }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    report
}

/// A staff member (`admin_token`) sets `chat`'s priority to `high` (a `chat.updated`).
pub async fn raise_priority(node: &super::TestNode, admin_token: &str, chat: &str) {
    let (status, body) = node
        .call(
            reqwest::Method::PATCH,
            &format!("/api/chats/{chat}"),
            Some(admin_token),
            Some(json!({ "priority": "high" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until `rx` acknowledged an event of each of `kinds`, and checks it did; returns what it
/// received.
pub async fn every_kind_arrives(rx: &Receiver, kinds: &[&str]) -> Vec<Value> {
    let got = rx
        .until(WITHIN, |g| kinds.iter().all(|k| count(g, k) > 0))
        .await;
    for kind in kinds {
        assert!(count(&got, kind) > 0, "no {kind} in {got:#?}");
    }
    got
}
