//! A real MongoDB-wire server for tests: `secantusd-py` (PyPI `secantusdb`) on a free port with
//! its own storage directory, which a test can stop and start again on the same port.
//!
//! Most tests share one server, started on first use, each with a fresh database; tests that
//! stop the server start their own. A server runs under a small shell wrapper that kills it when
//! its stdin closes, so no server outlives the test binary, even the shared one (a static is
//! never dropped).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use switchboard::store::{MongoSettings, MongoStore};
use tempfile::TempDir;

/// How long a server gets to start accepting connections, or to exit.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The store timeout tests use: short, so outage tests finish quickly.
pub const TEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// A `secantusd-py` process on `127.0.0.1:port`.
pub struct MongoServer {
    pub port: u16,
    /// The storage directory (kept across restarts) and the server's log; `None` for the shared
    /// server, which is never dropped (so could never delete a directory) and never restarted:
    /// it stores in a temporary directory the server deletes itself (`:memory:`), and logs to
    /// one file in the system's temporary directory, overwritten by the next run.
    dir: Option<TempDir>,
    /// The wrapper's stdin: closing it (or the test binary exiting) stops the server.
    running: Option<(Child, ChildStdin)>,
}

impl MongoServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> MongoServer {
        let port = free_port();
        let mut server = MongoServer {
            port,
            dir: Some(tempfile::tempdir().expect("temp dir")),
            running: None,
        };
        server.restart();
        server
    }

    /// Picks a free port without starting anything: for a store created before its server.
    pub fn unstarted() -> MongoServer {
        MongoServer {
            port: free_port(),
            dir: Some(tempfile::tempdir().expect("temp dir")),
            running: None,
        }
    }

    /// The connection string tests use.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&retryWrites=false",
            self.port
        )
    }

    /// Starts (again) on the same port and storage, and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "server already running");
        // The wrapper exits when the server does; the server is killed when the wrapper's stdin
        // gets a line or closes (fd 3 keeps stdin for the watcher: a background job's own stdin
        // is /dev/null in a non-interactive shell).
        let script = "exec 3<&0; \
                      secantusd-py --host 127.0.0.1 --port \"$1\" --storage-path \"$2\" --log-level WARNING >>\"$3\" 2>&1 3<&- & \
                      pid=$!; (read _ignored <&3; kill $pid 2>/dev/null) & wait $pid";
        let (storage, log) = match &self.dir {
            Some(dir) => (
                dir.path().join("db").display().to_string(),
                dir.path().join("server.log"),
            ),
            None => {
                let log = std::env::temp_dir().join("switchboard-tests-secantusd.log");
                let _ = std::fs::File::create(&log);
                (":memory:".to_owned(), log)
            }
        };
        let mut child = Command::new("sh")
            .args([
                "-c",
                script,
                "sh",
                &self.port.to_string(),
                &storage,
                &log.display().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secantusd-py starts (pip install secantusdb)");
        let stdin = child.stdin.take().expect("stdin piped");
        self.running = Some((child, stdin));
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some((child, _)) = &mut self.running
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("secantusd-py (pip install secantusdb) exited with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "secantusd-py did not listen on {} in time",
                self.port
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the server and waits until it has exited and the port refuses connections.
    pub fn stop(&mut self) {
        let Some((mut child, mut stdin)) = self.running.take() else {
            return;
        };
        let _ = stdin.write_all(b"stop\n");
        drop(stdin);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts after stop",
                self.port
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Settings for a store on this server, in `database`.
    pub fn settings(&self, database: &str) -> MongoSettings {
        MongoSettings {
            uri: self.uri(),
            database: database.to_owned(),
            timeout: TEST_TIMEOUT,
            message_retention: None,
        }
    }

    /// A store on this server, in `database`.
    pub async fn store(&self, database: &str) -> MongoStore {
        MongoStore::connect(self.settings(database))
            .await
            .expect("store builds")
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The server most tests share, started on first use.
pub fn shared() -> &'static MongoServer {
    static SHARED: OnceLock<MongoServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut server = MongoServer {
            port: free_port(),
            dir: None,
            running: None,
        };
        server.restart();
        server
    })
}

/// A database name no other test uses.
pub fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}
