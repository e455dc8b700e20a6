//! A real `redis-server` on a free loopback port, with no persistence (`--save "" --appendonly
//! no`), that a test can kill and start again on the same port (it comes back empty).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A `redis-server` process owned by one test.
pub struct RedisServer {
    pub port: u16,
    /// `requirepass`, when the server wants one.
    password: Option<String>,
    child: Option<Child>,
    /// Its working directory (nothing is persisted there).
    dir: TempDir,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer::on_port(free_port());
        server.restart().await;
        server
    }

    /// Starts a server that refuses clients without `password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        let mut server = RedisServer::on_port(free_port());
        server.password = Some(password.to_owned());
        server.restart().await;
        server
    }

    /// A server for `port` that is not running yet (see [`RedisServer::restart`]).
    pub fn on_port(port: u16) -> RedisServer {
        RedisServer {
            port,
            password: None,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The URL nodes use, with the password when there is one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server at once (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server without closing its connections (SIGSTOP): commands are accepted by the
    /// kernel and wait unanswered, as with a stalled or overloaded Redis.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT); it answers what waited, in order.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} redis-server");
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_owned(), p.clone()]),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        self.child = Some(child);
        let port = self.port;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !tokio::task::spawn_blocking(move || answers_ping(port))
            .await
            .unwrap_or(false)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on {port} did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    // A server with a password answers `-NOAUTH`: it is up all the same.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server is continued first (never panicking here: the test may be unwinding).
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}
