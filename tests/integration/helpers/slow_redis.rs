//! Redis made slow, and watched: TCP proxies that hold a node's commands back (one chunk, or
//! every chunk by a set latency), and a `MONITOR` that counts what Redis was asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A TCP proxy to Redis that, once given a needle and a count `n`, holds back (4 s unless told) the chunk
/// after the first `n` a node sends containing the needle, and with it everything after it on
/// that connection, as a slow Redis would.
pub struct StallingProxy;

impl StallingProxy {
    pub async fn start(
        redis_port: u16,
        pid: Arc<std::sync::Mutex<Option<(String, usize)>>>,
    ) -> String {
        Self::start_holding(redis_port, pid, Duration::from_secs(4)).await
    }

    /// [`StallingProxy::start`], holding the chunk back for `hold`.
    pub async fn start_holding(
        redis_port: u16,
        pid: Arc<std::sync::Mutex<Option<(String, usize)>>>,
        hold: Duration,
    ) -> String {
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
                            tokio::time::sleep(hold).await;
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

/// A TCP proxy to Redis that delays every chunk a node sends by the latency it is set to (0 at
/// first), in order, without holding back the chunks behind it: a Redis that answers, slowly.
pub struct DelayProxy {
    pub url: String,
    latency_ms: Arc<AtomicU64>,
}

impl DelayProxy {
    pub async fn start(redis_port: u16) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("address").port();
        let latency_ms = Arc::new(AtomicU64::new(0));
        let latency = latency_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let latency = latency.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                    tokio::spawn(async move {
                        while let Some((due, chunk)) = rx.recv().await {
                            tokio::time::sleep_until(due).await;
                            if sw.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let delay = Duration::from_millis(latency.load(Ordering::SeqCst));
                        if tx
                            .send((Instant::now() + delay, buf[..n].to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        DelayProxy {
            url: format!("redis://127.0.0.1:{port}"),
            latency_ms,
        }
    }

    /// Delays what is sent from now on by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }
}

/// `redis-cli MONITOR` on a server, written to a file: every command Redis runs, those of
/// clients and those of scripts (`[0 lua]`).
pub struct RedisMonitor {
    child: std::process::Child,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// What a [`RedisMonitor`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Monitored {
    /// Commands clients sent (a script run is one).
    pub requests: u64,
    /// Commands Redis ran: the requests and every command inside the scripts they ran.
    pub commands: u64,
}

impl RedisMonitor {
    pub async fn start(port: u16) -> RedisMonitor {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("monitor.log");
        let out = std::fs::File::create(&path).expect("monitor file");
        let child = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "MONITOR"])
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-cli starts");
        // `MONITOR` answers `OK` once it is on.
        let on = super::eventually(Duration::from_secs(5), || async {
            std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with("OK"))
        })
        .await;
        assert!(on, "MONITOR did not start");
        RedisMonitor {
            child,
            path,
            _dir: dir,
        }
    }

    /// Stops watching and counts what was seen, leaving out the lines that contain `ignore`
    /// (the test's own polling).
    pub fn stop_ignoring(mut self, ignore: &str) -> Monitored {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut seen = Monitored {
            requests: 0,
            commands: 0,
        };
        let lines = text
            .lines()
            .filter(|l| l.contains("] \"") && !l.contains(ignore));
        for line in lines {
            seen.commands += 1;
            if !line.contains(" lua] ") {
                seen.requests += 1;
            }
        }
        seen
    }
}
