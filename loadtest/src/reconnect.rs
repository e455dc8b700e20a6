//! `reconnect`: clients chatting while a node drains (SIGTERM) or dies (SIGKILL); measures the
//! time until every client is connected again and checks that nothing is missing.
//!
//! Each client is a user in their own chat who sends an acknowledged message every
//! `--send-interval-ms` with a `clientMessageId`. Unacked sends are kept and resent with the
//! same id after reconnecting (the protocol's retry). After the storm every client reads its
//! chat back with `chat:sync` and checks: every acked message saved, no id saved twice, `seq`
//! without gaps. With `--restart-cmd`, the generator starts a replacement node once the old one
//! is gone (a single node restarting); with several `--urls`, clients move to the others.
//! `--recover` runs the connection state recovery variant instead (`recover.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::{Common, http, report, sio, stats, token};

#[derive(Args)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    #[arg(long, default_value_t = 200)]
    pub(crate) clients: usize,
    /// The node to stop.
    #[arg(long)]
    pub(crate) kill_pid: u32,
    /// TERM (drain) or KILL (die).
    #[arg(long, default_value = "TERM")]
    pub(crate) signal: String,
    /// Shell command starting a replacement node once the old one has exited.
    #[arg(long)]
    pub(crate) restart_cmd: Option<String>,
    #[arg(long, default_value_t = 3)]
    pub(crate) warmup_secs: u64,
    /// How often each client sends (without `--recover`), or each chat gets a message from
    /// its staff sender (with `--recover`).
    #[arg(long, default_value_t = 500)]
    pub(crate) send_interval_ms: u64,
    /// Give up waiting for clients to come back after this long.
    #[arg(long, default_value_t = 60)]
    pub(crate) max_secs: u64,
    /// Skip the `chat:sync` check (for servers without persistence; ignored with `--recover`,
    /// which checks what the clients received against what the senders had acknowledged).
    #[arg(long)]
    pub(crate) no_verify: bool,
    /// Connection state recovery: the clients are unchanged socket.io-client frontends that
    /// only listen (they keep the `pid`, track the offset and send both back when they
    /// reconnect; they never call `chat:sync`), fed by staff senders on a node that stays up
    /// (`--sender-node`). Checks every event emitted to them arrived exactly once, in order.
    #[arg(long)]
    pub(crate) recover: bool,
    /// With `--recover`: staff sockets sending to the clients' chats (each owns a share).
    #[arg(long, default_value_t = 2)]
    pub(crate) senders: usize,
    /// With `--recover`: each client also gets a report (`sendReportMessage`) this often
    /// (0: none).
    #[arg(long, default_value_t = 5000)]
    pub(crate) report_interval_ms: u64,
    /// With `--recover`: the index in `--urls` of the node the senders use and the chats are
    /// opened on (default: the last, which is not the one stopped when there are several).
    #[arg(long)]
    pub(crate) sender_node: Option<usize>,
    /// With `--recover`: traffic goes on this long after every client is back.
    #[arg(long, default_value_t = 2)]
    pub(crate) tail_secs: u64,
    /// With `--recover`: read `INFO commandstats` from this Redis before and after the storm
    /// (`redis://HOST:PORT`) and report Redis commands per recovered client.
    #[arg(long)]
    pub(crate) redis_url: Option<String>,
    /// With `--recover`: the index in `--urls` of the node `--kill-pid` is. Clients that
    /// started on another node must not lose their connection (counted as `disturbed`,
    /// failing `--strict`).
    #[arg(long, default_value_t = 0)]
    pub(crate) kill_node: usize,
    /// With `--recover`: listening clients bind source addresses 127.0.0.<first_src> ..
    /// 127.0.0.<first_src + src_addrs - 1> in turn, so one address pair's ~28,000 ports are
    /// not the wall (0: the kernel's choice).
    #[arg(long, default_value_t = 0)]
    pub(crate) src_addrs: u8,
    #[arg(long, default_value_t = 10)]
    pub(crate) first_src: u8,
    /// With `--recover`: the listening clients live in this many worker processes (each under
    /// a process's 20,000 open files, each from its own source address 127.0.0.<first_src + k>);
    /// 0: in this process.
    #[arg(long, default_value_t = 0)]
    pub(crate) workers: usize,
    /// With `--recover`: how many clients get messages and reports (spread over every node);
    /// 0: all of them.
    #[arg(long, default_value_t = 0)]
    pub(crate) watched: usize,
}

/// What one client reports at the end.
#[derive(Default)]
struct Outcome {
    /// Its connection closed under it (with several nodes, only the stopped node's clients).
    dropped: bool,
    back_after_ms: Option<u64>,
    /// Sends answered with `ok: false` (resent with the same `clientMessageId` until acked).
    failed_acks: usize,
    attempts: u64,
    acked: BTreeSet<String>,
    unacked: usize,
    missing: usize,
    duplicates: usize,
    seq_gaps: usize,
    error: Option<String>,
}

struct Shared {
    kill_at_us: AtomicU64,
    sending: AtomicBool,
    /// Clients whose connection closed, and those of them connected again.
    down: AtomicU64,
    back: AtomicU64,
}

pub async fn run(a: ReconnectArgs) -> bool {
    if a.recover {
        return crate::recover::run(a).await;
    }
    let c = a.common.clone();
    let targets = c.targets();
    let shared = Arc::new(Shared {
        kill_at_us: AtomicU64::new(0),
        sending: AtomicBool::new(true),
        down: AtomicU64::new(0),
        back: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for i in 0..a.clients {
        let id = format!("{}-rc-u{i}", c.label);
        let tok = token::mint(&c.secret, &id, "user", 3600);
        let chat = http::open_chat(&targets[i % targets.len()], &tok, None)
            .await
            .unwrap_or_else(|e| crate::fail(&e));
        let (targets, shared, stop_rx, ready_tx) = (
            targets.clone(),
            shared.clone(),
            stop_rx.clone(),
            ready_tx.clone(),
        );
        let (interval, verify) = (Duration::from_millis(a.send_interval_ms), !a.no_verify);
        tasks.push(tokio::spawn(async move {
            client(
                i, tok, chat, targets, shared, stop_rx, ready_tx, interval, verify,
            )
            .await
        }));
    }
    for _ in 0..a.clients {
        ready_rx.recv().await;
    }
    eprintln!(
        "{} clients connected; warming up {}s",
        a.clients, a.warmup_secs
    );
    tokio::time::sleep(Duration::from_secs(a.warmup_secs)).await;

    shared.kill_at_us.store(stats::now_us(), Ordering::SeqCst);
    let Stopped {
        killed_at,
        exit_ms,
        restart_ms: restart,
    } = stop_node(&a).await;
    // Every client that lost its connection back (or the limit), then a little more traffic.
    let deadline = killed_at + Duration::from_secs(a.max_secs);
    while Instant::now() < deadline {
        let (down, back) = (
            shared.down.load(Ordering::SeqCst),
            shared.back.load(Ordering::SeqCst),
        );
        if down > 0 && down == back {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} of {} dropped clients back after {} ms",
        shared.back.load(Ordering::SeqCst),
        shared.down.load(Ordering::SeqCst),
        killed_at.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.sending.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap_or_default());
    }
    let mut hist = stats::histogram();
    let mut not_back = 0;
    let mut attempts = 0;
    for o in &outcomes {
        match o.back_after_ms {
            Some(ms) => {
                let _ = hist.record((ms * 1000).max(1));
            }
            None if o.dropped => not_back += 1,
            None => {}
        }
        attempts += o.attempts;
    }
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let errors: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.error.as_ref())
        .take(5)
        .collect();
    let result = json!({
        "mode": "reconnect",
        "label": c.label,
        "clients": a.clients,
        "signal": a.signal,
        "nodes": targets.len(),
        "dropped": outcomes.iter().filter(|o| o.dropped).count(),
        "oldNodeGoneMs": exit_ms,
        "restartStartedMs": restart,
        "allBackMs": if not_back == 0 { Value::from(hist.max() / 1000) } else { Value::Null },
        "backP50Ms": hist.value_at_quantile(0.5) / 1000,
        "backP99Ms": hist.value_at_quantile(0.99) / 1000,
        "notBack": not_back,
        "reconnectAttempts": attempts,
        "ackedMessages": outcomes.iter().map(|o| o.acked.len()).sum::<usize>(),
        "unackedAtEnd": sum(|o| o.unacked),
        "failedAcks": sum(|o| o.failed_acks),
        "missing": sum(|o| o.missing),
        "duplicates": sum(|o| o.duplicates),
        "seqGaps": sum(|o| o.seq_gaps),
        "verified": !a.no_verify,
        "firstErrors": errors,
    });
    let md = format!(
        "| clients | nodes | signal | dropped | old node gone ms | all back ms | back p50 ms | back p99 ms | not back | acked msgs | failed acks | missing | duplicates | seq gaps |\n|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        a.clients,
        targets.len(),
        a.signal,
        result["dropped"],
        result["oldNodeGoneMs"],
        result["allBackMs"],
        result["backP50Ms"],
        result["backP99Ms"],
        not_back,
        result["ackedMessages"],
        result["failedAcks"],
        checked(&a, &result["missing"]),
        checked(&a, &result["duplicates"]),
        checked(&a, &result["seqGaps"])
    );
    report::save(&c.out, "reconnect", &c.label, &result, &md);
    // A run where no client lost its connection proved nothing.
    let clean = not_back == 0
        && result["dropped"].as_u64() > Some(0)
        && result["missing"] == 0
        && result["duplicates"] == 0
        && result["seqGaps"] == 0;
    !c.strict || clean
}

/// When the node was signalled, how long it took to exit, and when its replacement started.
pub(crate) struct Stopped {
    pub killed_at: Instant,
    pub exit_ms: u64,
    pub restart_ms: Option<u64>,
}

/// Signals `--kill-pid`, waits (at most `--max-secs`) until it has exited, then runs
/// `--restart-cmd` when given.
pub(crate) async fn stop_node(a: &ReconnectArgs) -> Stopped {
    let killed_at = Instant::now();
    let _ = tokio::process::Command::new("kill")
        .args([format!("-{}", a.signal), a.kill_pid.to_string()])
        .status()
        .await;
    while std::path::Path::new(&format!("/proc/{}", a.kill_pid)).exists()
        && killed_at.elapsed() < Duration::from_secs(a.max_secs)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A zombie child of someone else still has a /proc entry; its state says so.
        if std::fs::read_to_string(format!("/proc/{}/stat", a.kill_pid))
            .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
    }
    let exit_ms = killed_at.elapsed().as_millis() as u64;
    let mut restart_ms = None;
    if let Some(cmd) = &a.restart_cmd {
        restart_ms = Some(killed_at.elapsed().as_millis() as u64);
        let _ = tokio::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .await;
    }
    Stopped {
        killed_at,
        exit_ms,
        restart_ms,
    }
}

/// A verification figure, or "not checked" when `--no-verify` skipped it.
fn checked(a: &ReconnectArgs, v: &Value) -> String {
    if a.no_verify {
        "not checked".into()
    } else {
        v.to_string()
    }
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    tok: String,
    chat: String,
    targets: Vec<sio::Target>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<()>,
    interval: Duration,
    verify: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let mut pending: HashMap<u64, String> = HashMap::new();
    let mut next_k = 0u64;
    let mut node = i % targets.len();
    let mut first = true;
    let mut lost = false;
    let mut backoff = Duration::from_millis(100);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, String)>();
    let send = |conn: &sio::Conn, k: u64, cmid: &str| {
        conn.send(sio::event_ack(k, "message:send", &json!({ "chatId": chat, "message": { "content": format!("rc {cmid}") }, "clientMessageId": cmid })))
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let on_frame: sio::OnFrame = {
            let ack_tx = ack_tx.clone();
            Arc::new(move |f: &str| {
                if let Some((id, body)) = sio::parse_ack(f) {
                    let _ = ack_tx.send((id, body.to_owned()));
                }
            })
        };
        let mut conn = match sio::connect(&targets[node], &tok, None, on_frame).await {
            Ok(c) => c,
            Err(e) => {
                out.attempts += 1;
                out.error.get_or_insert(e);
                node = (node + 1) % targets.len();
                // Spread the storm: backoff with jitter, as socket.io-client does.
                let jitter = Duration::from_millis((stats::now_us() ^ (i as u64 * 7919)) % 200);
                tokio::select! {
                    _ = tokio::time::sleep(backoff + jitter) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if first {
            first = false;
        } else {
            let kill = shared.kill_at_us.load(Ordering::SeqCst);
            if out.back_after_ms.is_none() {
                out.back_after_ms = Some(stats::now_us().saturating_sub(kill) / 1000);
                shared.back.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = ready.send(());
        for (k, cmid) in &pending {
            send(&conn, *k, cmid);
        }
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = &mut conn.done => {
                        if !lost {
                            lost = true;
                            shared.down.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                }
                _ = tick.tick() => {
                    if shared.sending.load(Ordering::Relaxed) {
                        next_k += 1;
                        let cmid = format!("c{i}-{next_k}");
                        send(&conn, next_k, &cmid);
                        pending.insert(next_k, cmid);
                    }
                }
                Some((k, body)) = ack_rx.recv() => {
                    if body.starts_with("[{\"ok\":true") {
                        if let Some(cmid) = pending.remove(&k) { out.acked.insert(cmid); }
                    } else {
                        out.failed_acks += 1;
                    }
                }
                _ = stop.changed() => break,
            }
        }
        if *stop.borrow() {
            // Let the last acks in, then read the chat back.
            let until = Instant::now() + Duration::from_secs(5);
            while !pending.is_empty() && Instant::now() < until && conn.is_open() {
                if let Ok(Some((k, body))) =
                    tokio::time::timeout(Duration::from_millis(200), ack_rx.recv()).await
                    && body.starts_with("[{\"ok\":true")
                    && let Some(cmid) = pending.remove(&k)
                {
                    out.acked.insert(cmid);
                }
            }
            if verify && conn.is_open() {
                check(&conn, &chat, &mut ack_rx, &mut out).await;
            }
            conn.close();
            break;
        }
    }
    out.unacked = pending.len();
    out.dropped = lost;
    out
}

/// Reads the chat back and compares it with what was acked.
async fn check(
    conn: &sio::Conn,
    chat: &str,
    acks: &mut mpsc::UnboundedReceiver<(u64, String)>,
    out: &mut Outcome,
) {
    const SYNC_ID: u64 = 1 << 40;
    conn.send(sio::event_ack(
        SYNC_ID,
        "chat:sync",
        &json!({ "chatId": chat, "afterSeq": 0, "limit": 500 }),
    ));
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(5), acks.recv()).await {
            Ok(Some((SYNC_ID, body))) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let msgs = v[0]["messages"].as_array().cloned().unwrap_or_default();
                let mut seen = BTreeSet::new();
                for (n, m) in msgs.iter().enumerate() {
                    if m["seq"].as_u64() != Some(n as u64 + 1) {
                        out.seq_gaps += 1;
                    }
                    if let Some(cmid) = m["clientMessageId"].as_str()
                        && !seen.insert(cmid.to_owned())
                    {
                        out.duplicates += 1;
                    }
                }
                out.missing = out.acked.iter().filter(|c| !seen.contains(*c)).count();
                return;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    out.error
        .get_or_insert_with(|| "chat:sync got no answer".into());
}
