//! `fanout`: one sender, many receivers of one room, and a rate sweep that finds the knee.
//!
//! The receivers are `--receivers` sockets of one user (`<label>-fan-rx`), all in its room
//! `user:<id>`, spread over the nodes; the sender is a staff member in a chat with that user,
//! so each `message:send` is saved once and delivered as `message:new` to every receiver. Each
//! message carries `lt:<step>:<sent µs>`, so a receiver measures latency without parsing JSON.
//! A step passes while its p99 stays under `--knee-p99-ms` and at least `--min-delivery` of the
//! expected deliveries arrive within `--grace-ms` after its last send; the knee is the last
//! passing rate. Server user CPU per delivery comes from `/proc/PID/stat`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::{Common, http, procfs, report, sio, stats, token};

#[derive(Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Receiving sockets (one user, many tabs), spread over the nodes.
    #[arg(long, default_value_t = 1000)]
    receivers: usize,
    /// Messages per second the sender sends, one sweep step each, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,50,100,200,400,800,1600,3200"
    )]
    rates: Vec<u64>,
    /// Seconds each step sends for.
    #[arg(long, default_value_t = 5)]
    step_secs: u64,
    /// After a step's last send, how long deliveries may still arrive.
    #[arg(long, default_value_t = 1500)]
    grace_ms: u64,
    /// A step fails when its delivery p99 exceeds this.
    #[arg(long, default_value_t = 100.0)]
    knee_p99_ms: f64,
    /// A step fails when fewer than this share of the deliveries arrived in time.
    #[arg(long, default_value_t = 0.99)]
    min_delivery: f64,
    /// Keep sweeping after the first failing step.
    #[arg(long)]
    no_stop: bool,
    /// Run a failing step again, up to this many times, before the sweep stops: one stall of
    /// the machine (a step's p99 is its 30 slowest deliveries of 3,000) then does not end a
    /// sweep that the next attempt at the same rate passes. Every attempt is a row; the knee
    /// is the last rate an attempt passed, and `firstFailRate` the first rate whose first
    /// attempt failed (the knee without retries is the rate before it).
    #[arg(long, default_value_t = 0)]
    retries: usize,
}

struct Step {
    hist: Histogram<u64>,
}

pub async fn run(a: FanoutArgs) -> bool {
    let c = &a.common;
    let targets = c.targets();
    let rx_id = format!("{}-fan-rx", c.label);
    let tx_id = format!("{}-fan-tx", c.label);
    let rx_token = token::mint(&c.secret, &rx_id, "user", 3600);
    let tx_token = token::mint(&c.secret, &tx_id, "admin", 3600);
    let chat_id = http::open_chat(&targets[0], &tx_token, Some(&rx_id))
        .await
        .unwrap_or_else(|e| crate::fail(&e));

    // One slot per attempt: a message carries its attempt's slot, so a late delivery of an
    // earlier attempt is not counted in the next.
    let slots = a.rates.len() * (a.retries + 1);
    let steps: Arc<Vec<Mutex<Step>>> = Arc::new(
        (0..slots)
            .map(|_| {
                Mutex::new(Step {
                    hist: stats::histogram(),
                })
            })
            .collect(),
    );
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..slots).map(|_| AtomicU64::new(0)).collect());
    let on_frame: sio::OnFrame = {
        let (steps, counts) = (steps.clone(), counts.clone());
        Arc::new(move |f: &str| {
            if !f.starts_with("42[\"message:new\"") {
                return;
            }
            let Some(i) = f.find("lt:") else { return };
            let mut parts = f[i + 3..].split(|ch: char| !ch.is_ascii_digit());
            let (Some(Ok(step)), Some(Ok(sent))) = (
                parts.next().map(str::parse::<usize>),
                parts.next().map(str::parse::<u64>),
            ) else {
                return;
            };
            if let (Some(h), Some(n)) = (steps.get(step), counts.get(step)) {
                n.fetch_add(1, Ordering::Relaxed);
                let _ = h
                    .lock()
                    .unwrap()
                    .hist
                    .record(stats::now_us().saturating_sub(sent).max(1));
            }
        })
    };
    let mut receivers = Vec::with_capacity(a.receivers);
    let started = Instant::now();
    for i in 0..a.receivers {
        match sio::connect(
            &targets[i % targets.len()],
            &rx_token,
            None,
            on_frame.clone(),
        )
        .await
        {
            Ok(conn) => receivers.push(conn),
            Err(e) => crate::fail(&format!("receiver {i}: {e}")),
        }
    }
    eprintln!(
        "{} receivers connected in {:.1}s",
        receivers.len(),
        started.elapsed().as_secs_f64()
    );
    let errors = Arc::new(AtomicU64::new(0));
    let sender_frame: sio::OnFrame = {
        let errors = errors.clone();
        Arc::new(move |f: &str| {
            if f.starts_with("42[\"error\"") {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let sender = sio::connect(&targets[0], &tx_token, None, sender_frame)
        .await
        .unwrap_or_else(|e| crate::fail(&format!("sender: {e}")));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut rows = Vec::new();
    let mut knee: Option<u64> = None;
    let mut all_delivered = true;
    let mut first_fail: Option<u64> = None;
    let attempts = a
        .rates
        .iter()
        .flat_map(|&rate| (0..=a.retries).map(move |attempt| (rate, attempt)));
    for (s, (rate, attempt)) in attempts.enumerate() {
        // A later attempt runs only while this rate has not passed yet.
        if attempt > 0 && knee == Some(rate) {
            continue;
        }
        let cpu0 = procfs::total_user_ticks(&c.server_pids);
        let sys0 = procfs::total_sys_ticks(&c.server_pids);
        let gen0 = procfs::cpu_ticks(std::process::id()).map_or(0, |(u, s)| u + s);
        let t0 = Instant::now();
        let total = rate * a.step_secs;
        let mut sent = 0u64;
        while sent < total {
            let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            while sent < due {
                let content = format!("lt:{s}:{}", stats::now_us());
                sender.send(sio::event(
                    "message:send",
                    &json!({ "chatId": chat_id, "message": { "content": content } }),
                ));
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let send_secs = t0.elapsed().as_secs_f64();
        let expected = sent * receivers.len() as u64;
        let deadline = Instant::now() + Duration::from_millis(a.grace_ms);
        while counts[s].load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cpu1 = procfs::total_user_ticks(&c.server_pids);
        let sys1 = procfs::total_sys_ticks(&c.server_pids);
        let gen1 = procfs::cpu_ticks(std::process::id()).map_or(0, |(u, s)| u + s);
        let wall = t0.elapsed().as_secs_f64();
        let delivered = counts[s].load(Ordering::Relaxed);
        let ratio = if expected > 0 {
            delivered as f64 / expected as f64
        } else {
            1.0
        };
        let hist = steps[s].lock().unwrap().hist.clone();
        let summary = stats::summary(&hist);
        let p99 = summary["p99Ms"].as_f64().unwrap_or(f64::MAX);
        let cpu_us = (cpu1 - cpu0) as f64 * 1e6 / procfs::TICKS_PER_SEC as f64;
        let sys_us = (sys1 - sys0) as f64 * 1e6 / procfs::TICKS_PER_SEC as f64;
        let per_delivery = |x: f64| {
            if delivered > 0 && !c.server_pids.is_empty() {
                Value::from((x / delivered as f64 * 100.0).round() / 100.0)
            } else {
                Value::Null
            }
        };
        let passed = p99 <= a.knee_p99_ms && ratio >= a.min_delivery;
        all_delivered &= delivered == expected;
        let row = json!({
            "rate": rate,
            "sent": sent,
            "sendSecs": (send_secs * 100.0).round() / 100.0,
            "expected": expected,
            "delivered": delivered,
            "deliveryRatio": (ratio * 10000.0).round() / 10000.0,
            "deliveriesPerSec": (delivered as f64 / send_secs).round(),
            "latency": summary,
            "serverUserCpuUsPerDelivery": per_delivery(cpu_us),
            // The kernel's share: on loopback it includes much of the receiving side's TCP work,
            // done in the sender's system call.
            "serverSysCpuUsPerDelivery": per_delivery(sys_us),
            // Shares of one core over the step (send + grace): is either side saturated?
            "serverUserCpuPct": ((cpu_us / 1e6 / wall) * 1000.0).round() / 10.0,
            "generatorCpuPct": (((gen1 - gen0) as f64 / procfs::TICKS_PER_SEC as f64 / wall) * 1000.0).round() / 10.0,
            "attempt": attempt + 1,
            "passed": passed,
        });
        eprintln!(
            "rate {rate}/s{}: delivered {delivered}/{expected}, p99 {p99} ms, {}",
            if attempt > 0 {
                format!(" (attempt {})", attempt + 1)
            } else {
                String::new()
            },
            if passed { "ok" } else { "FAILED" }
        );
        rows.push(row);
        if passed {
            knee = Some(rate);
            continue;
        }
        if attempt == 0 && first_fail.is_none() {
            first_fail = Some(rate);
        }
        if attempt == a.retries && !a.no_stop {
            break;
        }
    }
    for r in &receivers {
        r.close();
    }
    sender.close();
    let errors = errors.load(Ordering::Relaxed);
    let knee_row = rows
        .iter()
        .find(|r| r["rate"].as_u64() == knee && r["passed"].as_bool() == Some(true));
    let result = json!({
        "mode": "fanout",
        "label": c.label,
        "receivers": receivers.len(),
        "nodes": targets.len(),
        "kneeP99Ms": a.knee_p99_ms,
        "kneeRate": knee,
        "firstFailRate": first_fail,
        "retries": a.retries,
        "kneeDeliveriesPerSec": knee_row.map(|r| r["deliveriesPerSec"].clone()),
        "kneeCpuUsPerDelivery": knee_row.map(|r| r["serverUserCpuUsPerDelivery"].clone()),
        "senderErrors": errors,
        "steps": rows,
    });
    let mut md = String::from(
        "| msgs/s | deliveries/s | delivered | p50 ms | p99 ms | max ms | server user CPU µs/delivery | server sys CPU µs/delivery | server CPU % | generator CPU % | pass |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|\n",
    );
    for r in result["steps"].as_array().into_iter().flatten() {
        md += &format!(
            "| {}{} | {} | {:.2}% | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["rate"],
            match r["attempt"].as_u64() {
                Some(n) if n > 1 => format!(" (attempt {n})"),
                _ => String::new(),
            },
            r["deliveriesPerSec"],
            r["deliveryRatio"].as_f64().unwrap_or(0.0) * 100.0,
            r["latency"]["p50Ms"],
            r["latency"]["p99Ms"],
            r["latency"]["maxMs"],
            r["serverUserCpuUsPerDelivery"],
            r["serverSysCpuUsPerDelivery"],
            r["serverUserCpuPct"],
            r["generatorCpuPct"],
            if r["passed"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
    md += &format!(
        "\nKnee ({} receivers, p99 ≤ {} ms and ≥ {}% delivered): **{} msgs/s** = {} deliveries/s\n",
        receivers.len(),
        a.knee_p99_ms,
        a.min_delivery * 100.0,
        knee.map_or("none".into(), |k| k.to_string()),
        result["kneeDeliveriesPerSec"]
    );
    report::save(&c.out, "fanout", &c.label, &result, &md);
    !c.strict || (all_delivered && errors == 0)
}
