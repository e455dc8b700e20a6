//! `hold`: idle connections held open, added in steps, with the server's RSS read after each
//! step; the slope of RSS over connections is the memory one idle connection costs.
//!
//! A process may hold at most 20,000 files and one source address about 28,000 ports, so the
//! connections are opened by worker processes (this binary, `hold-worker`), each holding at most
//! `--per-worker` connections from its own source address 127.0.0.x. A worker holds until its
//! stdin closes (the parent is done or died) or `--max-secs` passes.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

use crate::{Common, procfs, report, sio, token};

#[derive(Args)]
pub struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// Total connections after each step, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,5000,10000,15000,19000"
    )]
    steps: Vec<u64>,
    /// Most connections one worker process holds.
    #[arg(long, default_value_t = 9000)]
    per_worker: u64,
    /// Handshakes in flight at once, per worker.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Pause after each step before RSS is read.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
    /// Workers give up holding after this long, whatever happens.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Source addresses are 127.0.0.<first_src>, 127.0.0.<first_src + 1>, ...
    #[arg(long, default_value_t = 10)]
    first_src: u8,
    /// After the last step, hold this long without sending anything and report the servers'
    /// CPU over it (user + system) per connection and second: what heartbeats cost (Engine.IO
    /// pings, presence TTLs). 0: not measured.
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// A Redis server's PID: its RSS at each step and its CPU over `--idle-secs` are reported
    /// apart from the servers' (not summed into them).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Every Nth connection is a staff member (role `admin`: the `admins` room instead of
    /// `users`, and presence's staff set), the rest users. 0: users only.
    #[arg(long, default_value_t = 0)]
    staff_every: u64,
}

#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    src: Ipv4Addr,
    /// User ids are `<prefix>-<n>`.
    #[arg(long)]
    prefix: String,
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Every Nth connection (of this worker) is staff; 0: none.
    #[arg(long, default_value_t = 0)]
    staff_every: u64,
}

/// The worker: connect `count` users, print `connected <ok> failed <n> [first error]`, hold.
pub async fn worker(a: WorkerArgs) -> bool {
    let target = sio::Target::parse(&a.url).unwrap_or_else(|e| crate::fail(&e));
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let noop: sio::OnFrame = Arc::new(|_| {});
    let mut tasks = Vec::with_capacity(a.count as usize);
    for i in 0..a.count {
        let (sem, failed, first_error, noop, target) = (
            sem.clone(),
            failed.clone(),
            first_error.clone(),
            noop.clone(),
            target.clone(),
        );
        let staff = a.staff_every > 0 && i % a.staff_every == 0;
        let role = if staff { "admin" } else { "user" };
        let token = token::mint(&a.secret, &format!("{}-{i}", a.prefix), role, 3600);
        let src = a.src;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            match sio::connect(&target, &token, Some(src), noop).await {
                Ok(c) => Some(c),
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_error.lock().unwrap().get_or_insert(e);
                    None
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(Some(c)) = t.await {
            conns.push(c);
        }
    }
    let err = first_error.lock().unwrap().clone().unwrap_or_default();
    println!(
        "connected {} failed {} {err}",
        conns.len(),
        failed.load(Ordering::Relaxed)
    );
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    tokio::select! {
        _ = async { while let Ok(n) = stdin.read(&mut sink).await { if n == 0 { break } } } => {}
        _ = tokio::time::sleep(Duration::from_secs(a.max_secs)) => {}
    }
    let dropped = conns.iter().filter(|c| !c.is_open()).count();
    eprintln!(
        "hold-worker {}: {dropped} of {} connections were closed by the server while held",
        a.src,
        conns.len()
    );
    true
}

pub async fn run(a: HoldArgs) -> bool {
    let c = &a.common;
    let exe = std::env::current_exe().expect("own path");
    let url = c.urls.first().cloned().unwrap_or_default();
    let rss_before = procfs::total_rss_kib(&c.server_pids);
    let mut workers: Vec<Child> = Vec::new();
    let mut held = 0u64;
    let mut failed = 0u64;
    let mut points = Vec::new();
    let mut redis_points = Vec::new();
    let mut rows = Vec::new();
    for (s, &step) in a.steps.iter().enumerate() {
        let started = Instant::now();
        while held < step {
            let n = (step - held).min(a.per_worker);
            let k = workers.len();
            let src = Ipv4Addr::new(127, 0, 0, a.first_src.wrapping_add(k as u8));
            let mut child = Command::new(&exe)
                .args([
                    "hold-worker",
                    "--url",
                    &url,
                    "--count",
                    &n.to_string(),
                    "--src",
                    &src.to_string(),
                ])
                .args([
                    "--prefix",
                    &format!("{}-hold-w{k}", c.label),
                    "--concurrency",
                    &a.concurrency.to_string(),
                ])
                .args(["--max-secs", &a.max_secs.to_string()])
                .args(["--staff-every", &a.staff_every.to_string()])
                .env("JWT_SECRET", &c.secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| crate::fail(&format!("spawn worker: {e}")));
            let mut line = String::new();
            let stdout = child.stdout.take().expect("piped");
            let _ = BufReader::new(stdout).read_line(&mut line).await;
            let mut words = line.split_whitespace();
            let ok: u64 = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(0);
            let bad: u64 = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(n);
            if bad > 0 {
                eprintln!("worker {k}: {line}");
            }
            held += ok;
            failed += bad;
            workers.push(child);
            if ok == 0 {
                break;
            }
        }
        let connect_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
        let rss = procfs::total_rss_kib(&c.server_pids);
        let redis_rss = a.redis_pid.and_then(procfs::rss_kib);
        eprintln!(
            "step {s}: {held} held ({failed} failed), server RSS {rss} KiB{}, {connect_secs:.1}s to connect",
            redis_rss.map_or(String::new(), |r| format!(", Redis RSS {r} KiB"))
        );
        points.push((held as f64, rss as f64));
        if let Some(r) = redis_rss {
            redis_points.push((held as f64, r as f64));
        }
        rows.push(json!({ "connections": held, "serverRssKiB": rss, "redisRssKiB": redis_rss, "connectSecs": (connect_secs * 10.0).round() / 10.0 }));
        if held < step {
            eprintln!("could not reach {step} connections; stopping the sweep");
            break;
        }
    }
    let idle = if a.idle_secs > 0 && held > 0 {
        Some(idle_cpu(&c.server_pids, a.redis_pid, held, a.idle_secs).await)
    } else {
        None
    };
    for mut w in workers {
        drop(w.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(20), w.wait()).await;
        let _ = w.kill().await;
    }
    let slope_kib = slope(&points);
    let per_conn_bytes = slope_kib.map(|s| (s * 1024.0).round());
    let redis_per_conn_bytes = slope(&redis_points).map(|s| (s * 1024.0).round());
    let result = json!({
        "mode": "hold",
        "label": c.label,
        "serverRssBeforeKiB": rss_before,
        "steps": rows,
        "failedConnections": failed,
        "rssPerConnectionBytes": per_conn_bytes,
        "redisRssPerConnectionBytes": redis_per_conn_bytes,
        "idleCpu": idle,
        "fitRange": [points.first().map(|p| p.0), points.last().map(|p| p.0)],
    });
    let mut md = String::from(
        "| connections | server RSS (MiB) | seconds to connect step |\n|---:|---:|---:|\n",
    );
    for r in result["steps"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {:.1} | {} |\n",
            r["connections"],
            r["serverRssKiB"].as_f64().unwrap_or(0.0) / 1024.0,
            r["connectSecs"]
        );
    }
    md += &format!(
        "\nRSS per idle connection (least-squares slope): **{}** bytes\n",
        per_conn_bytes.map_or("n/a".into(), |b| b.to_string())
    );
    if let Some(b) = redis_per_conn_bytes {
        md += &format!("\nRedis RSS per idle connection (slope): {b} bytes\n");
    }
    if let Some(i) = &idle {
        md += &format!(
            "\nIdle CPU over {} s at {} connections: servers {} µs per connection per second (user {} + system {} ticks){}\n",
            i["secs"],
            i["connections"],
            i["serverUsPerConnSec"],
            i["serverUserTicks"],
            i["serverSysTicks"],
            if i["redisUsPerConnSec"].is_null() {
                String::new()
            } else {
                format!(
                    "; Redis {} µs per connection per second",
                    i["redisUsPerConnSec"]
                )
            }
        );
    }
    report::save(&c.out, "hold", &c.label, &result, &md);
    !c.strict || failed == 0
}

/// CPU time (user + system) of the servers, and of Redis apart, over `secs` of holding `held`
/// connections idle: µs per connection per second, what the heartbeats cost.
async fn idle_cpu(servers: &[u32], redis: Option<u32>, held: u64, secs: u64) -> serde_json::Value {
    let ticks = |pids: &[u32]| {
        (
            procfs::total_user_ticks(pids),
            procfs::total_sys_ticks(pids),
        )
    };
    let redis_pids: Vec<u32> = redis.into_iter().collect();
    let (s0, r0) = (ticks(servers), ticks(&redis_pids));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (s1, r1) = (ticks(servers), ticks(&redis_pids));
    let us_per = |user: u64, sys: u64| {
        let us = (user + sys) as f64 * 1e6 / procfs::TICKS_PER_SEC as f64;
        (us / held as f64 / secs as f64 * 100.0).round() / 100.0
    };
    let (su, ss) = (s1.0 - s0.0, s1.1 - s0.1);
    let (ru, rs) = (r1.0 - r0.0, r1.1 - r0.1);
    eprintln!(
        "idle {secs} s at {held} connections: servers {su} user + {ss} system ticks{}",
        redis.map_or(String::new(), |_| format!(", Redis {ru} + {rs}"))
    );
    json!({
        "secs": secs,
        "connections": held,
        "serverUserTicks": su,
        "serverSysTicks": ss,
        "serverUsPerConnSec": us_per(su, ss),
        "redisUserTicks": redis.map(|_| ru),
        "redisSysTicks": redis.map(|_| rs),
        "redisUsPerConnSec": redis.map(|_| us_per(ru, rs)),
    })
}

/// Least-squares slope of y over x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
