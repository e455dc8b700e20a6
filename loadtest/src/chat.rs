//! `chat`: acknowledged `message:send` in many 1:1 support chats at fixed total rates; every
//! ack means the message was saved. Reports saves/s, ack latency and server CPU per save.
//! With `--staff N`, N staff sockets are online (in `admins`): every message then reaches a
//! recipient, so delivery status moves (PROTOCOL.md "Delivery status"), as in a support desk.
//!
//! The ack id carries the step and the send time (`step * 10^12 + µs`), so an ack is timed
//! without any map of pending sends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::{Common, http, procfs, report, sio, stats, token};

const STEP_UNIT: u64 = 1_000_000_000_000;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    common: Common,
    /// Users, each in their own support chat.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Total sends per second, one step each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 5)]
    step_secs: u64,
    /// After a step's last send, how long acks may still arrive.
    #[arg(long, default_value_t = 3000)]
    grace_ms: u64,
    /// Staff sockets online, receiving every message (0: the messages reach no recipient).
    #[arg(long, default_value_t = 0)]
    staff: usize,
    /// The first staff member opens every chat, so it is a participant: with several nodes, a
    /// user whose node holds no staff socket then has its messages delivered live across nodes
    /// (one mark write per chat side and window) rather than left `sent`.
    #[arg(long)]
    staff_chats: bool,
}

struct Step {
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
    first_error: Option<String>,
}

pub async fn run(a: ChatArgs) -> bool {
    let c = &a.common;
    let targets = c.targets();
    let steps: Arc<Vec<Mutex<Step>>> = Arc::new(
        a.rates
            .iter()
            .map(|_| {
                Mutex::new(Step {
                    hist: stats::histogram(),
                    ok: 0,
                    failed: 0,
                    first_error: None,
                })
            })
            .collect(),
    );
    let on_frame: sio::OnFrame = {
        let steps = steps.clone();
        Arc::new(move |f: &str| {
            let Some((id, body)) = sio::parse_ack(f) else {
                return;
            };
            let Some(step) = steps.get((id / STEP_UNIT) as usize) else {
                return;
            };
            let mut st = step.lock().unwrap();
            if body.starts_with("[{\"ok\":true") {
                st.ok += 1;
                let _ = st
                    .hist
                    .record(stats::now_us().saturating_sub(id % STEP_UNIT).max(1));
            } else {
                st.failed += 1;
                if st.first_error.is_none() {
                    st.first_error = Some(body.chars().take(200).collect());
                }
            }
        })
    };
    let started = Instant::now();
    let mut users = Vec::with_capacity(a.users);
    for i in 0..a.users {
        let target = &targets[i % targets.len()];
        let user_id = format!("{}-chat-u{i}", c.label);
        let tok = token::mint(&c.secret, &user_id, "user", 3600);
        let chat = if a.staff_chats {
            let staff = token::mint(
                &c.secret,
                &format!("{}-chat-staff0", c.label),
                "admin",
                3600,
            );
            http::open_chat(target, &staff, Some(&user_id)).await
        } else {
            http::open_chat(target, &tok, None).await
        }
        .unwrap_or_else(|e| crate::fail(&e));
        let conn = sio::connect(target, &tok, None, on_frame.clone())
            .await
            .unwrap_or_else(|e| crate::fail(&format!("user {i}: {e}")));
        users.push((conn, chat));
    }
    let mut staff = Vec::with_capacity(a.staff);
    let ignore: sio::OnFrame = Arc::new(|_: &str| {});
    for i in 0..a.staff {
        let target = &targets[i % targets.len()];
        let tok = token::mint(
            &c.secret,
            &format!("{}-chat-staff{i}", c.label),
            "admin",
            3600,
        );
        let conn = sio::connect(target, &tok, None, ignore.clone())
            .await
            .unwrap_or_else(|e| crate::fail(&format!("staff {i}: {e}")));
        staff.push(conn);
    }
    eprintln!(
        "{} users with chats and {} staff sockets ready in {:.1}s",
        users.len(),
        staff.len(),
        started.elapsed().as_secs_f64()
    );
    let mut last_id = vec![0u64; users.len()];
    let mut rows = Vec::new();
    let mut clean = true;
    let mut next = 0usize;
    for (s, &rate) in a.rates.iter().enumerate() {
        let cpu0 = procfs::total_user_ticks(&c.server_pids);
        let t0 = Instant::now();
        let total = rate * a.step_secs;
        let mut sent = 0u64;
        while sent < total {
            let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            while sent < due {
                let u = next % users.len();
                next += 1;
                let id = (s as u64 * STEP_UNIT + stats::now_us()).max(last_id[u] + 1);
                last_id[u] = id;
                let (conn, chat) = &users[u];
                conn.send(sio::event_ack(id, "message:send", &json!({ "chatId": chat, "message": { "content": format!("load message {sent}") } })));
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let send_secs = t0.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_millis(a.grace_ms);
        loop {
            let done = {
                let st = steps[s].lock().unwrap();
                st.ok + st.failed >= sent
            };
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cpu1 = procfs::total_user_ticks(&c.server_pids);
        let st = steps[s].lock().unwrap();
        let cpu_us = (cpu1 - cpu0) as f64 * 1e6 / procfs::TICKS_PER_SEC as f64;
        clean &= st.ok == sent && st.failed == 0;
        let row = json!({
            "rate": rate,
            "sent": sent,
            "acked": st.ok,
            "failed": st.failed,
            "firstError": st.first_error,
            "savesPerSec": (st.ok as f64 / send_secs).round(),
            "ack": stats::summary(&st.hist),
            "serverUserCpuUsPerSave": if st.ok > 0 && !c.server_pids.is_empty() { Value::from((cpu_us / st.ok as f64).round()) } else { Value::Null },
        });
        eprintln!(
            "rate {rate}/s: {} acked, {} failed, ack p99 {} ms",
            st.ok, st.failed, row["ack"]["p99Ms"]
        );
        rows.push(row);
    }
    for (conn, _) in &users {
        conn.close();
    }
    for conn in &staff {
        conn.close();
    }
    let result = json!({ "mode": "chat", "label": c.label, "users": users.len(), "staff": staff.len(), "nodes": targets.len(), "steps": rows });
    let mut md = String::from(
        "| sends/s | saves/s | acked | failed | ack p50 ms | ack p99 ms | ack max ms | server user CPU µs/save |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in result["steps"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["rate"],
            r["savesPerSec"],
            r["acked"],
            r["failed"],
            r["ack"]["p50Ms"],
            r["ack"]["p99Ms"],
            r["ack"]["maxMs"],
            r["serverUserCpuUsPerSave"]
        );
    }
    report::save(&c.out, "chat", &c.label, &result, &md);
    !c.strict || clean
}
