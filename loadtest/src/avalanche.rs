//! `reconnect --recover --workers W`: the avalanche. The listening clients live in `W` worker
//! processes (this binary, `reconnect-worker`), each under the 20,000 open files a process may
//! hold and each binding its own source address 127.0.0.x (so one address pair's ~28,000
//! ports are not the wall); the parent keeps the staff senders, signals the node and checks.
//!
//! The parent talks to a worker over its stdin, one line each: `kill` (the node is being
//! signalled now: times are measured from here), `expect <i> <last seq> <last report>` (what
//! client `i` should end with), `stop` (wait, bounded, for what was expected, then close every
//! client and answer). The worker writes `ready` once each of its clients is connected,
//! `status <down> <back>` whenever those change, and a last `result <json>` line: per client,
//! what it saw and how its connections went. A worker stops by itself after `--max-secs`, or
//! when its stdin closes (the parent died).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};

use crate::recover::{Listener, Seen, Shared, listen};
use crate::{sio, stats, token};

#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long)]
    label: String,
    /// Client indices `from..to` (user ids `<label>-rs-u<i>`).
    #[arg(long)]
    from: usize,
    #[arg(long)]
    to: usize,
    #[arg(long)]
    src: Option<Ipv4Addr>,
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
}

/// One worker process: its clients, until `stop`, stdin's end or `--max-secs`.
pub async fn worker(a: WorkerArgs) -> bool {
    let targets: Vec<sio::Target> = a
        .urls
        .iter()
        .map(|u| sio::Target::parse(u).unwrap_or_else(|e| crate::fail(&e)))
        .collect();
    let shared = Arc::new(Shared {
        kill_at_us: AtomicU64::new(0),
        sending: AtomicBool::new(true),
        down: AtomicU64::new(0),
        back: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let mut seen = Vec::new();
    let mut tasks = Vec::new();
    for i in a.from..a.to {
        let tok = token::mint(&a.secret, &format!("{}-rs-u{i}", a.label), "user", 3600);
        let s = Arc::new(Mutex::new(Seen::default()));
        seen.push(s.clone());
        let (targets, shared, stop_rx, ready_tx) = (
            targets.clone(),
            shared.clone(),
            stop_rx.clone(),
            ready_tx.clone(),
        );
        let src = a.src;
        tasks.push(tokio::spawn(async move {
            listen(i, tok, s, targets, src, shared, stop_rx, ready_tx).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(a.max_secs);
    let mut out = tokio::io::stdout();
    for _ in a.from..a.to {
        if tokio::time::timeout_at(deadline.into(), ready_rx.recv())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = out.write_all(b"ready\n").await;
    let _ = out.flush().await;
    // Counted again from ready: at 100,000 clients the connect phase alone took minutes, and a
    // worker that stopped before the parent's storm was over lost every client's record. Still
    // bounded: at most twice `--max-secs` in all.
    let deadline = Instant::now() + Duration::from_secs(a.max_secs);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut expect: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut last = (u64::MAX, u64::MAX);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) if l == "kill" => shared.kill_at_us.store(stats::now_us(), Ordering::SeqCst),
                Ok(Some(l)) if l.starts_with("expect ") => {
                    let n: Vec<u64> = l.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
                    if let [i, m, r] = n[..] {
                        expect.insert(i as usize, (m, r));
                    }
                }
                Ok(Some(l)) if l == "stop" => break,
                Ok(Some(_)) => {}
                _ => break,
            },
            _ = tick.tick() => {
                let now = (shared.down.load(Ordering::SeqCst), shared.back.load(Ordering::SeqCst));
                if now != last {
                    last = now;
                    let _ = out.write_all(format!("status {} {}\n", now.0, now.1).as_bytes()).await;
                    let _ = out.flush().await;
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
    // What the parent expects, arrived (bounded), then every client closes.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let all = expect.iter().all(|(i, (m, r))| {
            let s = seen[i - a.from].lock().unwrap();
            (*m == 0 || s.seqs.contains(m)) && (*r == 0 || s.reports.contains(r))
        });
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let kill = shared.kill_at_us.load(Ordering::SeqCst);
    let mut rows = Vec::new();
    for (k, t) in tasks.into_iter().enumerate() {
        let o = t.await.unwrap_or_default();
        let s = seen[k].lock().unwrap();
        // Connect times relative to the kill, so the parent can put them on its own clock.
        let marks: Vec<Value> = s
            .reconnects
            .iter()
            .map(|&(m, r, at, ok)| json!([m, r, at as i64 - kill as i64, ok]))
            .collect();
        rows.push(json!({
            "i": a.from + k,
            "firstNode": o.first_node,
            "dropped": o.dropped,
            "serverDisconnects": o.server_disconnects,
            "back": o.back_after_ms,
            "recovered": o.recovered_after_ms,
            "reconnects": o.reconnects,
            "recoveredReconnects": o.recovered_reconnects,
            "attempts": o.attempts,
            "error": o.error,
            "seqs": s.seqs,
            "reports": s.reports,
            "events": s.events,
            "marks": marks,
        }));
    }
    let _ = out
        .write_all(format!("result {}\n", Value::Array(rows)).as_bytes())
        .await;
    let _ = out.flush().await;
    true
}

/// The parent's side of the workers.
pub struct Pool {
    workers: Vec<(Child, ChildStdin)>,
    results: Vec<tokio::task::JoinHandle<Option<Value>>>,
    /// When the parent sent `kill` (its own clock).
    kill_at_us: u64,
}

impl Pool {
    /// Starts `workers` processes sharing `clients` clients, worker `k` from
    /// 127.0.0.(first_src + k), and waits until every one says `ready`. Their `status` lines keep `shared.down` and
    /// `shared.back` as the sums over the workers.
    pub async fn start(
        a: &crate::reconnect::ReconnectArgs,
        workers: usize,
        shared: Arc<Shared>,
    ) -> Pool {
        let c = &a.common;
        let exe = std::env::current_exe().expect("own path");
        let per = a.clients.div_ceil(workers.max(1));
        let counts: Arc<Vec<(AtomicU64, AtomicU64)>> = Arc::new(
            (0..workers)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
        );
        let mut pool = Pool {
            workers: Vec::new(),
            results: Vec::new(),
            kill_at_us: 0,
        };
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
        for k in 0..workers {
            let (from, to) = ((k * per).min(a.clients), ((k + 1) * per).min(a.clients));
            let src = Ipv4Addr::new(127, 0, 0, a.first_src.wrapping_add(k as u8));
            let mut child = Command::new(&exe)
                .args(["reconnect-worker", "--urls", &c.urls.join(",")])
                .args(["--label", &c.label, "--src", &src.to_string()])
                .args(["--from", &from.to_string(), "--to", &to.to_string()])
                .args([
                    "--max-secs",
                    &(a.max_secs + a.warmup_secs + a.tail_secs + 60).to_string(),
                ])
                .env("JWT_SECRET", &c.secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| crate::fail(&format!("spawn worker: {e}")));
            let stdin = child.stdin.take().expect("piped");
            let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
            let (counts, shared, ready_tx) = (counts.clone(), shared.clone(), ready_tx.clone());
            pool.results.push(tokio::spawn(async move {
                while let Ok(Some(l)) = lines.next_line().await {
                    if l == "ready" {
                        let _ = ready_tx.send(());
                    } else if let Some(st) = l.strip_prefix("status ") {
                        let n: Vec<u64> = st
                            .split_whitespace()
                            .filter_map(|w| w.parse().ok())
                            .collect();
                        if let [d, b] = n[..] {
                            counts[k].0.store(d, Ordering::SeqCst);
                            counts[k].1.store(b, Ordering::SeqCst);
                            let sum = |f: fn(&(AtomicU64, AtomicU64)) -> u64| {
                                counts.iter().map(f).sum::<u64>()
                            };
                            shared
                                .down
                                .store(sum(|c| c.0.load(Ordering::SeqCst)), Ordering::SeqCst);
                            shared
                                .back
                                .store(sum(|c| c.1.load(Ordering::SeqCst)), Ordering::SeqCst);
                        }
                    } else if let Some(r) = l.strip_prefix("result ") {
                        return serde_json::from_str(r).ok();
                    }
                }
                None
            }));
            pool.workers.push((child, stdin));
        }
        for _ in 0..workers {
            if ready_rx.recv().await.is_none() {
                crate::fail("a worker ended before its clients were connected");
            }
        }
        pool
    }

    /// The node is being signalled now.
    pub async fn kill(&mut self) {
        self.kill_at_us = stats::now_us();
        for (_, stdin) in &mut self.workers {
            let _ = stdin.write_all(b"kill\n").await;
            let _ = stdin.flush().await;
        }
    }

    /// Tells each worker what its watched clients should end with, stops them and collects
    /// what every client saw, in client order, on this process's clock.
    pub async fn finish(
        mut self,
        expect: &[(usize, u64, u64)],
        clients: usize,
    ) -> Vec<(Seen, Listener)> {
        let per = clients.div_ceil(self.workers.len().max(1));
        for &(i, m, r) in expect {
            if let Some((_, stdin)) = self.workers.get_mut(i / per.max(1)) {
                let _ = stdin
                    .write_all(format!("expect {i} {m} {r}\n").as_bytes())
                    .await;
            }
        }
        for (_, stdin) in &mut self.workers {
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
        }
        let mut out: Vec<(Seen, Listener)> = (0..clients).map(|_| Default::default()).collect();
        for (t, (mut child, _)) in self.results.into_iter().zip(self.workers) {
            let rows = tokio::time::timeout(Duration::from_secs(60), t).await;
            let _ = child.kill().await;
            let Ok(Ok(Some(Value::Array(rows)))) = rows else {
                eprintln!("a worker gave no result");
                continue;
            };
            for r in rows {
                let Some(i) = r["i"].as_u64().map(|i| i as usize).filter(|i| *i < clients) else {
                    continue;
                };
                let nums = |v: &Value| -> Vec<u64> {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_u64)
                        .collect()
                };
                let seen = Seen {
                    seqs: nums(&r["seqs"]),
                    reports: nums(&r["reports"]),
                    events: r["events"].as_u64().unwrap_or(0),
                    reconnects: r["marks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| {
                            let at = (self.kill_at_us as i64 + m[2].as_i64().unwrap_or(0)).max(0);
                            (
                                m[0].as_u64().unwrap_or(0) as usize,
                                m[1].as_u64().unwrap_or(0) as usize,
                                at as u64,
                                m[3].as_bool().unwrap_or(false),
                            )
                        })
                        .collect(),
                    ..Default::default()
                };
                let l = Listener {
                    first_node: r["firstNode"].as_u64().unwrap_or(0) as usize,
                    dropped: r["dropped"].as_bool().unwrap_or(false),
                    server_disconnects: r["serverDisconnects"].as_u64().unwrap_or(0) as u32,
                    back_after_ms: r["back"].as_u64(),
                    recovered_after_ms: r["recovered"].as_u64(),
                    reconnects: r["reconnects"].as_u64().unwrap_or(0) as u32,
                    recovered_reconnects: r["recoveredReconnects"].as_u64().unwrap_or(0) as u32,
                    attempts: r["attempts"].as_u64().unwrap_or(0),
                    error: r["error"].as_str().map(str::to_owned),
                };
                out[i] = (seen, l);
            }
        }
        out
    }
}
