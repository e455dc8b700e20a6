//! `webhook-sink`: a local webhook receiver for the throughput figure "webhook events per second
//! one node sustains" (issue #29). Answers every `POST` with `200` at once (keep-alive, as a
//! fast backend would), checks each request's Standard Webhooks signature when given the
//! secret, and counts events per second.
//!
//! Bounded: it stops `--idle-secs` after the last event (once one came), or after `--secs` in
//! all, and writes `<out>/webhook-sink-<label>.json` and `.md`: events, distinct ids, bad
//! signatures, the busiest second and the best `--window-secs` average (the sustained rate).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::report;

#[derive(Args)]
pub struct SinkArgs {
    /// Where to listen (the node's `WEBHOOK_URL` is `http://<this>/hook`).
    #[arg(long, default_value = "127.0.0.1:9901")]
    listen: String,
    /// The endpoint's `whsec_` secret: every signature is checked (none when absent).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The longest the sink runs, in seconds.
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// Stops this long after the last event, once one came, in seconds.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// The window the sustained rate is averaged over, in seconds.
    #[arg(long, default_value_t = 5)]
    window_secs: usize,
    #[arg(long, default_value = "switchboard")]
    label: String,
    #[arg(long, default_value = "loadtest/results")]
    out: PathBuf,
}

#[derive(Default)]
struct Counts {
    /// Events by second since the sink started.
    per_sec: Vec<u64>,
    ids: HashSet<String>,
    bad_signatures: u64,
    last: Option<Instant>,
}

pub async fn run(a: SinkArgs) -> bool {
    let key = a.secret.as_deref().map(|s| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim_start_matches("whsec_"))
            .unwrap_or_else(|e| crate::fail(&format!("--secret is not whsec_ + base64: {e}")))
    });
    let listener = TcpListener::bind(&a.listen)
        .await
        .unwrap_or_else(|e| crate::fail(&format!("cannot listen on {}: {e}", a.listen)));
    eprintln!("webhook sink on http://{}/hook", a.listen);
    let started = Instant::now();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let key = Arc::new(key);
    let deadline = started + Duration::from_secs(a.secs);
    let idle = Duration::from_secs(a.idle_secs);
    loop {
        let quiet = counts
            .lock()
            .unwrap()
            .last
            .is_some_and(|t| t.elapsed() >= idle);
        if quiet || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream, started, counts.clone(), key.clone()));
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let c = counts.lock().unwrap();
    let total: u64 = c.per_sec.iter().sum();
    let first = c.per_sec.iter().position(|&n| n > 0).unwrap_or(0);
    let last = c.per_sec.iter().rposition(|&n| n > 0).unwrap_or(0);
    let active = &c.per_sec[first.min(c.per_sec.len())..(last + 1).min(c.per_sec.len())];
    let peak = active.iter().copied().max().unwrap_or(0);
    let w = a.window_secs.max(1);
    let sustained = active
        .windows(w.min(active.len().max(1)))
        .map(|win| win.iter().sum::<u64>() as f64 / win.len() as f64)
        .fold(0.0, f64::max);
    let result = json!({
        "mode": "webhook-sink",
        "label": a.label,
        "events": total,
        "distinctIds": c.ids.len(),
        "badSignatures": c.bad_signatures,
        "signaturesChecked": key.is_some(),
        "activeSecs": active.len(),
        "peakPerSec": peak,
        "sustainedPerSec": sustained.round(),
        "windowSecs": w,
        "perSec": active,
    });
    let md = format!(
        "| events | distinct ids | bad signatures | active s | peak events/s | sustained events/s ({w} s) |\n|---:|---:|---:|---:|---:|---:|\n| {total} | {} | {} | {} | {peak} | {} |\n",
        c.ids.len(),
        c.bad_signatures,
        active.len(),
        sustained.round()
    );
    eprintln!(
        "webhook sink: {total} events ({} distinct ids, {} bad signatures), peak {peak}/s, sustained {}/s",
        c.ids.len(),
        c.bad_signatures,
        sustained.round()
    );
    report::save(&a.out, "webhook-sink", &a.label, &result, &md);
    c.bad_signatures == 0
}

/// One keep-alive connection: each request counted (and checked), answered `200`.
async fn serve(
    mut stream: TcpStream,
    started: Instant,
    counts: Arc<Mutex<Counts>>,
    key: Arc<Option<Vec<u8>>>,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // A whole request: the head, then Content-Length bytes.
        let (head_len, body_len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]);
                let len = header(&head, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break (end + 4, len);
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let body = &buf[head_len..head_len + body_len];
        let id = header(&head, "webhook-id").unwrap_or_default().to_owned();
        let valid = match key.as_ref() {
            None => true,
            Some(key) => verify(key, &head, &id, body),
        };
        {
            let mut c = counts.lock().unwrap();
            let sec = started.elapsed().as_secs() as usize;
            if c.per_sec.len() <= sec {
                c.per_sec.resize(sec + 1, 0);
            }
            c.per_sec[sec] += 1;
            c.ids.insert(id);
            c.bad_signatures += u64::from(!valid);
            c.last = Some(Instant::now());
        }
        buf.drain(..head_len + body_len);
        let reply: &[u8] = if valid {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether one of the `webhook-signature` header's `v1,` signatures is HMAC-SHA256 over
/// `id.timestamp.body` with `key`.
fn verify(key: &[u8], head: &str, id: &str, body: &[u8]) -> bool {
    let ts = header(head, "webhook-timestamp").unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header(head, "webhook-signature")
        .unwrap_or_default()
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}
