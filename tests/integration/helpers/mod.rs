//! Test helpers: a real node on port 0 with its own data directory, tokens, a REST client and
//! a Socket.IO client; for cluster tests, a real `redis-server` and nodes as separate processes.

pub mod cluster;
pub mod mongo;
pub mod quiet;
pub mod redis;
pub mod sio;
pub mod slow_mongo;
pub mod slow_redis;
pub mod webhooks;

use std::time::Duration;

use serde_json::Value;
use switchboard::domain::Role;
use switchboard::{AppState, Application, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cluster::{Cluster, Store};
pub use redis::{Redis, RedisServer, Topology, free_port};
pub use sio::{ConnectError, Sio, WAIT};

/// The JWT secret every test node shares (so one node's tokens work on every node).
pub const SECRET: &str = "integration-test-secret-0123456789";

/// Presence timings of cluster tests: a silent node stops counting within 3 s.
pub const TEST_TTL_SECS: u64 = 3;
pub const TEST_HEARTBEAT_SECS: u64 = 1;

/// A node running in this test process.
pub struct TestNode {
    pub port: u16,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Kept so the directory outlives the node (and can be reused by a restart).
    pub data: std::sync::Arc<TempDir>,
}

impl TestNode {
    /// Starts a node with default settings in a fresh data directory.
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    /// Starts a node, letting the test adjust its settings first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestNode {
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, adjust).await
    }

    /// Starts a node on an existing data directory (a restart).
    pub async fn start_in(
        data: std::sync::Arc<TempDir>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestNode {
        // `SB_TEST_LOG=1` (with `RUST_LOG`) shows the nodes' logs, for a test being debugged.
        if std::env::var_os("SB_TEST_LOG").is_some() {
            switchboard::telemetry::init(Some(switchboard::config::LogFormat::Pretty));
        }
        let mut cfg = Config::for_tests(data.path().to_owned());
        cfg.jwt_secret = Some(SECRET.into());
        cfg.cors_origins = "*".into();
        adjust(&mut cfg);
        let app = Application::build(cfg).await.expect("node builds");
        Self::serve(app, data)
    }

    /// Starts a node whose metrics listen on their own port (`METRICS_PORT`), chosen here, with
    /// `adjust` applied; returns the node and that port. A port found free can be taken by another
    /// test (or by this node's own port-0 bind) before the node binds it: then it tries another.
    pub async fn start_with_metrics_port(adjust: impl Fn(&mut Config)) -> (TestNode, u16) {
        for _ in 0..20 {
            let metrics = free_port();
            let data = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
            let mut cfg = Config::for_tests(data.path().to_owned());
            cfg.jwt_secret = Some(SECRET.into());
            cfg.cors_origins = "*".into();
            cfg.metrics_port = Some(metrics);
            adjust(&mut cfg);
            match Application::build(cfg).await {
                Ok(app) => return (Self::serve(app, data), metrics),
                Err(e) if is_addr_in_use(&e) => continue,
                Err(e) => panic!("node builds: {e:#}"),
            }
        }
        panic!("no free metrics port in 20 tries")
    }

    fn serve(app: Application, data: std::sync::Arc<TempDir>) -> TestNode {
        let port = app.port();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestNode {
            port,
            state,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            data,
        }
    }

    /// Starts a cluster node named `node_id` on Redis at `redis_url`, sharing the data directory
    /// `data` with the other nodes of the test (the embedded store stands in for MongoDB).
    pub async fn cluster(
        data: std::sync::Arc<TempDir>,
        redis_url: &str,
        node_id: &str,
    ) -> TestNode {
        Self::cluster_with(data, redis_url, node_id, |_| {}).await
    }

    /// [`TestNode::cluster`], letting the test adjust the other settings too.
    pub async fn cluster_with(
        data: std::sync::Arc<TempDir>,
        redis_url: &str,
        node_id: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestNode {
        let (url, id) = (redis_url.to_owned(), node_id.to_owned());
        Self::start_in(data, move |c| {
            c.redis_url = Some(url.into());
            c.node_id = Some(id);
            c.presence_ttl = Duration::from_secs(TEST_TTL_SECS);
            c.heartbeat_interval = Duration::from_secs(TEST_HEARTBEAT_SECS);
            adjust(c);
        })
        .await
    }

    /// Drains and stops the node, waiting for it to exit.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    pub fn token(&self, id: &str, role: Role) -> String {
        self.state
            .keys
            .verifier
            .issue(
                id,
                role,
                Some(&format!("{id} name")),
                Duration::from_secs(3600),
            )
            .expect("HS256 token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Connects a socket as `id` with `role`.
    pub async fn socket(&self, id: &str, role: Role) -> Sio {
        Sio::connect(self.port, Some(&self.token(id, role)))
            .await
            .expect("socket connects")
    }

    /// `GET /api/users/{id}/status`, asked by a staff token; its body (asserts `200`).
    pub async fn user_status(&self, id: &str) -> Value {
        let staff = self.token("status-watcher", Role::Admin);
        let path = format!("/api/users/{id}/status");
        let (status, body) = self
            .call(reqwest::Method::GET, &path, Some(&staff), None)
            .await;
        assert_eq!(status, 200, "status of {id}: {body}");
        body
    }

    /// A REST call; returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A chat staff `admin` opens with `user` (REST; both are participants, `admin` its
    /// assigned admin): the chat as answered.
    pub async fn staff_chat_json(&self, admin: &str, user: &str) -> Value {
        let token = self.token(admin, Role::Admin);
        let (status, chat) = self
            .call(
                reqwest::Method::POST,
                "/api/chats",
                Some(&token),
                Some(serde_json::json!({ "participantId": user })),
            )
            .await;
        assert_eq!(status, 201, "{chat}");
        chat
    }

    /// [`TestNode::staff_chat_json`]'s id.
    pub async fn staff_chat(&self, admin: &str, user: &str) -> String {
        let chat = self.staff_chat_json(admin, user).await;
        chat["id"].as_str().unwrap().to_owned()
    }

    /// Opens a chat as `user` (REST) and returns its id.
    pub async fn open_chat(&self, user_token: &str) -> String {
        let (status, chat) = self
            .call(
                reqwest::Method::POST,
                "/api/chats",
                Some(user_token),
                Some(serde_json::json!({})),
            )
            .await;
        assert_eq!(status, 201, "chat created: {chat}");
        chat["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A node running as its own `switchboard` process, so a test can SIGKILL it.
pub struct ProcessNode {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl ProcessNode {
    /// Starts `target/debug/switchboard` as cluster node `node_id` and waits until it is ready.
    pub async fn start(data: &std::path::Path, redis_url: &str, node_id: &str) -> ProcessNode {
        let (ttl, heartbeat) = (TEST_TTL_SECS.to_string(), TEST_HEARTBEAT_SECS.to_string());
        Self::start_with_env(
            data,
            &[
                ("REDIS_URL", redis_url),
                ("NODE_ID", node_id),
                ("PRESENCE_TTL_SECS", &ttl),
                ("HEARTBEAT_INTERVAL_SECS", &heartbeat),
            ],
        )
        .await
    }

    /// Starts `target/debug/switchboard` (a single node unless `env` names Redis) with these
    /// extra settings, and waits until it is ready. A port found free can be taken by another
    /// test before the process binds it; the process then exits, and another port is tried.
    pub async fn start_with_env(data: &std::path::Path, env: &[(&str, &str)]) -> ProcessNode {
        let http = reqwest::Client::new();
        for _ in 0..10 {
            let port = free_port();
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("DATA_DIR", data)
                .env("JWT_SECRET", SECRET)
                .env("OFFLINE_GRACE_SECS", "0")
                .env("CORS_ORIGINS", "*")
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", "warn")
                .env_remove("REDIS_URL")
                .env_remove("METRICS_PORT")
                .env_remove("MONGODB_URI")
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("switchboard binary starts");
            let mut node = ProcessNode {
                port,
                child: Some(child),
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if node.has_exited() {
                    break; // its port was taken: try another
                }
                let ready = http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await;
                // Ready, and answered by this process: one that lost its port exits at once.
                if matches!(ready, Ok(r) if r.status().is_success()) && !node.has_exited() {
                    return node;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "process node on port {port} not ready within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("process node: no port it could bind in 10 tries")
    }

    fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// SIGTERM (a drain), then waits up to 30 s for the process to exit.
    pub async fn drain(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exited = eventually(Duration::from_secs(30), || {
            let done = self.has_exited();
            async move { done }
        })
        .await;
        assert!(exited, "the drained node did not exit");
    }

    /// The process id (for reading `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Kills the process without warning (SIGKILL): no drain, no presence withdrawal.
    /// Stops the process (SIGSTOP) without closing anything: its peers' bytes queue in the
    /// kernel until [`ProcessNode::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [`ProcessNode::pause`]d process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the process is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .expect("runs kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` has finished `n` presence heartbeats that began after this call (the one
/// running now, if any, does not count), within `n + 2` heartbeat intervals; returns whether it
/// did. What a test waits on for "a heartbeat (and its resync) has passed".
pub async fn heartbeats_pass(node: &TestNode, n: u64) -> bool {
    let start = node.state.metrics.presence_heartbeats();
    let every = node.state.config.heartbeat_interval;
    eventually(every * (n as u32 + 2), || async {
        node.state.metrics.presence_heartbeats() > start + n
    })
    .await
}

/// `n` users named `{prefix}{i}` (tokens minted by `node`), each with one socket connected to
/// the node on `port`, in order.
pub async fn connect_users(
    node: &TestNode,
    port: u16,
    prefix: &str,
    n: usize,
) -> Vec<(String, Sio)> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let token = node.token(&format!("{prefix}{i}"), Role::User);
        let sock = Sio::connect(port, Some(&token)).await.expect("connects");
        users.push((token, sock));
    }
    users
}

/// Sends `text` to `chat` over `socket` and returns the saved message (the ack must be `ok`).
pub async fn send(socket: &Sio, chat: &str, text: &str) -> Value {
    let ack = socket
        .ack(
            "message:send",
            serde_json::json!({ "chatId": chat, "message": { "content": text } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "send: {ack}");
    ack["message"].clone()
}

/// Whether `error` is, at its root, a bind refused because the address is taken.
fn is_addr_in_use(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}
