//! Test helpers: a real node on port 0 with its own data directory, tokens, a REST client and
//! a Socket.IO client.

pub mod mongo;
pub mod sio;

use std::time::Duration;

use serde_json::Value;
use switchboard::domain::Role;
use switchboard::{AppState, Application, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use sio::{ConnectError, Sio, WAIT};

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
    pub async fn start_in(data: std::sync::Arc<TempDir>, adjust: impl FnOnce(&mut Config)) -> TestNode {
        let mut cfg = Config::for_tests(data.path().to_owned());
        cfg.jwt_secret = Some("integration-test-secret-0123456789".into());
        cfg.cors_origins = "*".into();
        adjust(&mut cfg);
        let app = Application::build(cfg).await.expect("node builds");
        let port = app.port();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestNode { port, state, http: reqwest::Client::new(), stop: Some(stop), task: Some(task), data }
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
        self.state.issue_token(id, role, Some(&format!("{id} name")), Duration::from_secs(3600)).expect("HS256 token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Connects a socket as `id` with `role`.
    pub async fn socket(&self, id: &str, role: Role) -> Sio {
        Sio::connect(self.port, Some(&self.token(id, role))).await.expect("socket connects")
    }

    /// A REST call; returns the status and the JSON body (Null when empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
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

    /// Opens a chat as `user` (REST) and returns its id.
    pub async fn open_chat(&self, user_token: &str) -> String {
        let (status, chat) = self.call(reqwest::Method::POST, "/api/chats", Some(user_token), Some(serde_json::json!({}))).await;
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
