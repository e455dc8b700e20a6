//! `reconnect --recover`: connection state recovery under a drain (SIGTERM) or a dead node
//! (SIGKILL), measured with clients that behave as unchanged socket.io-client 4.8 frontends.
//!
//! Each measured client is a user with one chat, opened by a staff member. It only listens,
//! and speaks recovery exactly as socket.io-client does (`build/esm/socket.js`): it keeps the
//! `pid` of the `CONNECT` answer; after every event whose last argument (counting the event
//! name) is a string, that string is its offset; when it reconnects, its `CONNECT` carries
//! `{ pid, offset, token }` (no `offset` when no event had arrived yet); it is `recovered` when
//! the answer's `pid` is the one it kept. It never calls `chat:sync`.
//!
//! `--senders` staff sockets on `--sender-node` (the last URL by default, so with several
//! nodes they stay up while the first one is stopped) send each chat a `message:send` every
//! `--send-interval-ms` and its user a `sendReportMessage` every `--report-interval-ms`,
//! before, during and after the storm. One message and one report per chat are in flight at a
//! time, so the order the server emits them in is the order they were sent: `seq` for messages,
//! a counter in the report's title. A message whose ack was lost is resent with the same
//! `clientMessageId` (the protocol's retry, which emits nothing new); a report whose ack was
//! lost is "uncertain" (it may or may not have been saved) and is not resent.
//!
//! At the end each client's received sequence is compared with what the senders had
//! acknowledged: missing (acked, never received), duplicated, out of order, unexpected
//! (received, never acked nor uncertain); and whether each dropped client came back recovered.
//! With `--redis-url`, Redis `INFO commandstats` is read before the signal, when every client
//! is back, and over a window of steady traffic before the signal: the storm's commands, and
//! their excess over steady traffic, per recovered client.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::reconnect::{ReconnectArgs, Stopped, stop_node};
use crate::{http, redisinfo, report, sio, stats, token};

/// What a listening client saw, written by its `on_frame` callback.
#[derive(Default)]
pub(crate) struct Seen {
    /// socket.io-client's `_pid` and `_lastOffset`.
    pub(crate) pid: Option<String>,
    pub(crate) offset: Option<String>,
    /// `seq` of every `message:new` of its chat, in arrival order.
    pub(crate) seqs: Vec<u64>,
    /// The counter of every `receiveReportMessage`, in arrival order.
    pub(crate) reports: Vec<u64>,
    /// Every event received (`message:delivered`, `user:status`, ... included).
    pub(crate) events: u64,
    /// At each connect: how many messages and reports had arrived, when (µs), and whether it
    /// was recovered.
    pub(crate) reconnects: Vec<(usize, usize, u64, bool)>,
}

/// How one listening client's connections went.
#[derive(Default)]
pub(crate) struct Listener {
    /// The node (index in `--urls`) it first connected to.
    pub(crate) first_node: usize,
    pub(crate) dropped: bool,
    /// The server ended the session with a `DISCONNECT` packet: socket.io-client would not
    /// have reconnected by itself.
    pub(crate) server_disconnects: u32,
    pub(crate) back_after_ms: Option<u64>,
    pub(crate) recovered_after_ms: Option<u64>,
    pub(crate) reconnects: u32,
    pub(crate) recovered_reconnects: u32,
    pub(crate) attempts: u64,
    pub(crate) error: Option<String>,
}

/// What a sender knows about one chat at the end.
#[derive(Default)]
struct Sent {
    /// `seq` of every acknowledged message.
    seqs: BTreeSet<u64>,
    /// Messages never acknowledged (saved or not: unknown).
    uncertain_msgs: usize,
    /// Counters of acknowledged reports.
    reports: BTreeSet<u64>,
    /// When each message / report was acknowledged (µs), by `seq` / counter.
    seq_acked_at: HashMap<u64, u64>,
    report_acked_at: HashMap<u64, u64>,
    /// Reports whose ack was lost with the connection (saved or not: unknown).
    uncertain_reports: usize,
    failed_acks: usize,
}

/// socket.io-client 4.8's reconnection delay (`build/esm/contrib/backo2.js`, with the
/// Manager's defaults `reconnectionDelay` 1000, `reconnectionDelayMax` 5000,
/// `randomizationFactor` 0.5): `ms = 1000 * 2^attempts`; `deviation = floor(rand * 0.5 * ms)`;
/// `ms -= deviation` when `floor(rand * 10)` is even, else `ms += deviation` (one `rand` for
/// both); `min(ms, 5000)`. `attempts` counts since the last successful open, so the first try
/// after a drop already waits 500..1500 ms.
pub(crate) fn backoff_ms(attempts: u32, rand: f64) -> u64 {
    let ms = 1000.0 * 2f64.powi(attempts.min(30) as i32);
    let deviation = (rand * 0.5 * ms).floor();
    let ms = if ((rand * 10.0).floor() as u64) & 1 == 0 {
        ms - deviation
    } else {
        ms + deviation
    };
    ms.min(5000.0) as u64
}

/// A uniform number in [0, 1) (xorshift; seeded per client, no dependency).
pub(crate) fn next_rand(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) struct Shared {
    pub(crate) kill_at_us: AtomicU64,
    pub(crate) sending: AtomicBool,
    pub(crate) down: AtomicU64,
    pub(crate) back: AtomicU64,
}

pub async fn run(a: ReconnectArgs) -> bool {
    let c = a.common.clone();
    let targets = c.targets();
    let home = a
        .sender_node
        .unwrap_or(targets.len() - 1)
        .min(targets.len() - 1);
    let n_senders = a.senders.clamp(1, a.clients.max(1));
    let staff: Vec<(String, String)> = (0..n_senders)
        .map(|s| {
            let id = format!("{}-rs-staff{s}", c.label);
            let tok = token::mint(&c.secret, &id, "admin", 3600);
            (id, tok)
        })
        .collect();
    let shared = Arc::new(Shared {
        kill_at_us: AtomicU64::new(0),
        // The senders start as soon as they are connected: every client already is.
        sending: AtomicBool::new(true),
        down: AtomicU64::new(0),
        back: AtomicU64::new(0),
    });

    // The watched clients: a user each whose chat a staff sender opened (on the senders'
    // node); they get the messages and reports. The others only hold a recoverable session.
    // Clients start on node `i % nodes`, so taking `nodes` in a row every `stride` spreads the
    // watched ones over every node.
    let n_nodes = targets.len();
    let stride = if a.watched == 0 {
        n_nodes
    } else {
        (a.clients * n_nodes / a.watched.max(1)).max(n_nodes)
    };
    let watched: Vec<usize> = (0..a.clients).filter(|i| i % stride < n_nodes).collect();
    let mut chats: HashMap<usize, String> = HashMap::new();
    for (k, &i) in watched.iter().enumerate() {
        let id = format!("{}-rs-u{i}", c.label);
        let chat = http::open_chat(&targets[home], &staff[k % n_senders].1, Some(&id))
            .await
            .unwrap_or_else(|e| crate::fail(&e));
        chats.insert(i, chat);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let mut seen = Vec::with_capacity(a.clients);
    let mut listeners = Vec::with_capacity(a.clients);
    let mut pool = None;
    if a.workers > 0 {
        pool = Some(crate::avalanche::Pool::start(&a, a.workers, shared.clone()).await);
    } else {
        for i in 0..a.clients {
            let id = format!("{}-rs-u{i}", c.label);
            let tok = token::mint(&c.secret, &id, "user", 3600);
            let s = Arc::new(Mutex::new(Seen::default()));
            seen.push(s.clone());
            let (targets, shared, stop_rx, ready_tx) = (
                targets.clone(),
                shared.clone(),
                stop_rx.clone(),
                ready_tx.clone(),
            );
            let src = (a.src_addrs > 0).then(|| {
                std::net::Ipv4Addr::new(
                    127,
                    0,
                    0,
                    a.first_src.wrapping_add((i % a.src_addrs as usize) as u8),
                )
            });
            listeners.push(tokio::spawn(async move {
                listen(i, tok, s, targets, src, shared, stop_rx, ready_tx).await
            }));
        }
        for _ in 0..a.clients {
            ready_rx.recv().await;
        }
    }

    // The senders, each owning every `n_senders`-th chat.
    let mut senders = Vec::new();
    for (s, (_, tok)) in staff.iter().enumerate() {
        let own: Vec<(usize, String, String)> = watched
            .iter()
            .skip(s)
            .step_by(n_senders)
            .map(|&i| (i, chats[&i].clone(), format!("{}-rs-u{i}", c.label)))
            .collect();
        let (target, shared, ready_tx, tok) = (
            targets[home].clone(),
            shared.clone(),
            ready_tx.clone(),
            tok.clone(),
        );
        let every = (a.send_interval_ms, a.report_interval_ms);
        senders.push(tokio::spawn(async move {
            send(s, tok, own, target, shared, ready_tx, every).await
        }));
    }
    for _ in 0..n_senders {
        ready_rx.recv().await;
    }
    eprintln!(
        "{} clients listening ({} watched, {} worker processes), {n_senders} senders on node {home}; warming up {}s",
        a.clients,
        watched.len(),
        a.workers,
        a.warmup_secs
    );
    // Redis: a window of steady traffic (the second half of the warm-up), then the storm.
    let redis = |label: &'static str| {
        let url = a.redis_url.clone();
        async move {
            match url {
                Some(u) => match redisinfo::command_calls(&u).await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        eprintln!("redis {label}: {e}");
                        None
                    }
                },
                None => None,
            }
        }
    };
    let half = Duration::from_millis(a.warmup_secs * 500);
    tokio::time::sleep(half).await;
    let steady_at = Instant::now();
    let steady0 = redis("steady").await;
    tokio::time::sleep(half).await;
    let storm0 = redis("storm").await;
    let steady_secs = steady_at.elapsed().as_secs_f64();

    shared.kill_at_us.store(stats::now_us(), Ordering::SeqCst);
    if let Some(p) = pool.as_mut() {
        p.kill().await;
    }
    let Stopped {
        killed_at,
        exit_ms,
        restart_ms,
    } = stop_node(&a).await;
    // Every dropped client back (twice in a row, 100 ms apart: a paced drain drops them in
    // batches), or the limit.
    let deadline = killed_at + Duration::from_secs(a.max_secs);
    let mut settled = 0;
    while Instant::now() < deadline && settled < 2 {
        let (down, back) = (
            shared.down.load(Ordering::SeqCst),
            shared.back.load(Ordering::SeqCst),
        );
        settled = if down > 0 && down == back {
            settled + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} of {} dropped clients back after {} ms",
        shared.back.load(Ordering::SeqCst),
        shared.down.load(Ordering::SeqCst),
        killed_at.elapsed().as_millis()
    );
    // Replays may still be read just after the answers: a second more before the snapshot.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let storm1 = redis("after").await;
    let storm_secs = killed_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(a.tail_secs)).await;

    // Stop sending; the senders collect their last acks.
    shared.sending.store(false, Ordering::SeqCst);
    let mut sent: Vec<Sent> = (0..a.clients).map(|_| Sent::default()).collect();
    let mut sender_errors = Vec::new();
    for t in senders {
        if let Ok((per_chat, err)) = t.await {
            for (i, s) in per_chat {
                sent[i] = s;
            }
            sender_errors.extend(err);
        }
    }
    let (seen, outcomes): (Vec<Seen>, Vec<Listener>) = match pool {
        Some(p) => {
            let expect: Vec<(usize, u64, u64)> = watched
                .iter()
                .map(|&i| {
                    let e = &sent[i];
                    let m = e.seqs.last().copied().unwrap_or(0);
                    (i, m, e.reports.last().copied().unwrap_or(0))
                })
                .collect();
            p.finish(&expect, a.clients).await.into_iter().unzip()
        }
        None => {
            // Let the last events arrive (bounded).
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                let all = seen.iter().zip(&sent).all(|(s, e)| {
                    let s = s.lock().unwrap();
                    e.seqs.last().is_none_or(|m| s.seqs.contains(m))
                        && e.reports.last().is_none_or(|m| s.reports.contains(m))
                });
                if all {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = stop_tx.send(true);
            let mut outcomes = Vec::new();
            for t in listeners {
                outcomes.push(t.await.unwrap_or_default());
            }
            let seen = seen
                .into_iter()
                .map(|s| std::mem::take(&mut *s.lock().unwrap()))
                .collect();
            (seen, outcomes)
        }
    };

    // Per client: what arrived against what was acknowledged.
    let mut tally = Tally::default();
    for (i, ((s, e), o)) in seen.iter().zip(&sent).zip(&outcomes).enumerate() {
        let m = compare(&s.seqs, &e.seqs, e.uncertain_msgs);
        let r = compare(&s.reports, &e.reports, e.uncertain_reports);
        tally.add(&m, &r, s.events, e);
        tally.replayed += replayed(s, e);
        tally.deaf_recovered += usize::from(deaf_after_recovery(s, e));
        tally.empty_recoveries += empty_recoveries(s, e);
        if m.faulty() || r.faulty() {
            // A few examples say where to look: which client, what went wrong where.
            if tally.examples.len() < 10 {
                tally.examples.push(format!(
                    "client {i} (dropped {}, reconnects {}, recovered {}): messages {}; reports {}; received messages {:?}, reports {:?}, connects at (messages, reports received before) {:?}",
                    o.dropped,
                    o.reconnects,
                    o.recovered_reconnects,
                    m.describe(&s.seqs),
                    r.describe(&s.reports),
                    s.seqs,
                    s.reports,
                    s.reconnects.iter().map(|&(m, r, _, _)| (m, r)).collect::<Vec<_>>()
                ));
            }
        }
    }
    let mut back = stats::histogram();
    let mut recovered_hist = stats::histogram();
    for o in &outcomes {
        if let Some(ms) = o.back_after_ms {
            let _ = back.record((ms * 1000).max(1));
        }
        if let Some(ms) = o.recovered_after_ms {
            let _ = recovered_hist.record((ms * 1000).max(1));
        }
    }
    let dropped = outcomes.iter().filter(|o| o.dropped).count();
    let not_back = outcomes
        .iter()
        .filter(|o| o.dropped && o.back_after_ms.is_none())
        .count();
    let recovered = outcomes
        .iter()
        .filter(|o| o.dropped && o.reconnects > 0 && o.recovered_reconnects == o.reconnects)
        .count();
    let not_recovered = dropped - recovered;
    // Clients of the surviving nodes must not have noticed the storm.
    let disturbed = outcomes
        .iter()
        .filter(|o| o.dropped && o.first_node != a.kill_node)
        .count();
    // Handshakes the survivors absorbed: the dropped clients' reconnects over the span from the
    // first to the last client back.
    let backs: Vec<u64> = outcomes.iter().filter_map(|o| o.back_after_ms).collect();
    let span_ms = backs
        .iter()
        .max()
        .zip(backs.iter().min())
        .map_or(0, |(hi, lo)| hi - lo);
    let handshakes_per_sec = (backs.len() as f64 / (span_ms.max(1) as f64 / 1000.0)).round();

    let redis_json = redis_figures(
        &steady0,
        &storm0,
        &storm1,
        steady_secs,
        storm_secs,
        recovered,
    );
    let errors: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.error.as_ref())
        .chain(sender_errors.iter())
        .take(5)
        .collect();
    let result = json!({
        "mode": "reconnect",
        "variant": "recover",
        "label": c.label,
        "clients": a.clients,
        "signal": a.signal,
        "nodes": targets.len(),
        "senderNode": home,
        "senders": n_senders,
        "sendIntervalMs": a.send_interval_ms,
        "reportIntervalMs": a.report_interval_ms,
        "dropped": dropped,
        "oldNodeGoneMs": exit_ms,
        "restartStartedMs": restart_ms,
        "allBackMs": if not_back == 0 && dropped > 0 { Value::from(back.max() / 1000) } else { Value::Null },
        "allRecoveredMs": if not_recovered == 0 && dropped > 0 { Value::from(recovered_hist.max() / 1000) } else { Value::Null },
        "backP50Ms": back.value_at_quantile(0.5) / 1000,
        "backP99Ms": back.value_at_quantile(0.99) / 1000,
        "notBack": not_back,
        "recovered": recovered,
        "notRecovered": not_recovered,
        "serverDisconnects": outcomes.iter().map(|o| o.server_disconnects as u64).sum::<u64>(),
        "reconnectAttempts": outcomes.iter().map(|o| o.attempts).sum::<u64>(),
        "messagesAcked": tally.msgs_acked,
        "reportsAcked": tally.reports_acked,
        "uncertain": tally.uncertain,
        "failedAcks": tally.failed_acks,
        "eventsReceived": tally.events,
        "replayedAtLeast": tally.replayed,
        "missing": tally.missing,
        "missingMessages": tally.missing_msgs,
        "missingReports": tally.missing_reports,
        "duplicates": tally.duplicates,
        "outOfOrder": tally.out_of_order,
        "unexpected": tally.unexpected,
        "clientsMissing": tally.clients_missing,
        "clientsDuplicated": tally.clients_duplicated,
        "clientsOutOfOrder": tally.clients_out_of_order,
        "faultExamples": tally.examples,
        "redis": redis_json,
        "firstErrors": errors,
    });
    let per = |k: &str| {
        result["redis"][k]
            .as_f64()
            .map_or("n/a".into(), |v| format!("{v:.2}"))
    };
    let mut md = format!(
        "| clients | nodes | signal | dropped | old node gone ms | all back ms | all recovered ms | back p50 / p99 ms | not back | not recovered | msgs + reports acked | replayed (at least) | missing | duplicated | out of order | unexpected | Redis cmds / recovered client (added over steady traffic) |\n|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} + {} | {} | {} | {} | {} | {} | {} ({}) |\n",
        a.clients,
        targets.len(),
        a.signal,
        dropped,
        exit_ms,
        result["allBackMs"],
        result["allRecoveredMs"],
        result["backP50Ms"],
        result["backP99Ms"],
        not_back,
        not_recovered,
        tally.msgs_acked,
        tally.reports_acked,
        tally.replayed,
        tally.missing,
        tally.duplicates,
        tally.out_of_order,
        tally.unexpected,
        per("commandsPerRecoveredClient"),
        per("excessPerRecoveredClient"),
    );
    for f in result["faultExamples"].as_array().into_iter().flatten() {
        md += &format!("\n- {}\n", f.as_str().unwrap_or_default());
    }
    if let Some(cmds) = result["redis"]["excessByCommandPerRecoveredClient"].as_object() {
        md += "\nRedis commands per recovered client during the storm (Redis counts the commands a script runs too), minus steady traffic: ";
        md += &cmds
            .iter()
            .map(|(k, v)| format!("`{k}` {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        md += "\n";
    }
    let mut result = result;
    result["recoveredP50Ms"] = json!(recovered_hist.value_at_quantile(0.5) / 1000);
    result["recoveredP99Ms"] = json!(recovered_hist.value_at_quantile(0.99) / 1000);
    result["recoveredMaxMs"] = json!(recovered_hist.max() / 1000);
    result["handshakesPerSec"] = json!(handshakes_per_sec);
    result["disturbed"] = json!(disturbed);
    result["deafRecovered"] = json!(tally.deaf_recovered);
    result["emptyRecoveries"] = json!(tally.empty_recoveries);
    md += &format!(
        "\nRecovered after the signal p50 / p99 / max: {} / {} / {} ms; {} handshakes/s absorbed; {} clients of other nodes disturbed; {} recovered clients deaf afterwards ({} connects told recovered that delivered nothing owed).\n",
        result["recoveredP50Ms"],
        result["recoveredP99Ms"],
        result["recoveredMaxMs"],
        handshakes_per_sec,
        disturbed,
        tally.deaf_recovered,
        tally.empty_recoveries
    );
    report::save(&c.out, "reconnect", &c.label, &result, &md);
    let clean = dropped > 0
        && disturbed == 0
        && tally.deaf_recovered == 0
        && not_back == 0
        && not_recovered == 0
        && tally.msgs_acked > 0
        && tally.missing == 0
        && tally.duplicates == 0
        && tally.out_of_order == 0
        && tally.unexpected == 0;
    !c.strict || clean
}

/// One client's received sequence against the acknowledged one.
#[derive(Default)]
struct Compared {
    /// The first few acknowledged numbers never received.
    missing_first: Vec<u64>,
    missing: usize,
    duplicates: usize,
    out_of_order: usize,
    unexpected: usize,
}

fn compare(received: &[u64], acked: &BTreeSet<u64>, uncertain: usize) -> Compared {
    let mut out = Compared::default();
    let mut got = BTreeSet::new();
    let mut max = 0;
    for &n in received {
        if !got.insert(n) {
            out.duplicates += 1;
        } else if n < max {
            out.out_of_order += 1;
        }
        max = max.max(n);
    }
    out.missing = acked.difference(&got).count();
    out.missing_first = acked.difference(&got).take(5).copied().collect();
    // Received but never acknowledged: fine for as many as were uncertain.
    out.unexpected = got.difference(acked).count().saturating_sub(uncertain);
    out
}

impl Compared {
    fn faulty(&self) -> bool {
        self.missing + self.duplicates + self.out_of_order + self.unexpected > 0
    }

    fn describe(&self, received: &[u64]) -> String {
        if !self.faulty() {
            return "ok".into();
        }
        format!(
            "missing {} (first {:?}), duplicated {}, out of order {}, unexpected {}; received {} in all",
            self.missing,
            self.missing_first,
            self.duplicates,
            self.out_of_order,
            self.unexpected,
            received.len()
        )
    }
}

/// How many of the client's connects said "recovered" and then delivered nothing, although its
/// replay had something to carry (acknowledged before the connect, not received before it):
/// issue 28's retry loop, each attempt told `recovered` and closed before its replay was read.
fn empty_recoveries(s: &Seen, e: &Sent) -> usize {
    let mut n = 0;
    for (k, &(m0, r0, at, recovered)) in s.reconnects.iter().enumerate().skip(1) {
        let (m1, r1) = s
            .reconnects
            .get(k + 1)
            .map_or((s.seqs.len(), s.reports.len()), |&(m, r, _, _)| (m, r));
        if !recovered || m1 > m0 || r1 > r0 {
            continue;
        }
        let (got_m, got_r): (BTreeSet<u64>, BTreeSet<u64>) = (
            s.seqs[..m0].iter().copied().collect(),
            s.reports[..r0].iter().copied().collect(),
        );
        let owed = e
            .seq_acked_at
            .iter()
            .any(|(q, t)| *t < at && !got_m.contains(q))
            || e.report_acked_at
                .iter()
                .any(|(q, t)| *t < at && !got_r.contains(q));
        n += usize::from(owed);
    }
    n
}

/// Was the client told "recovered" and then deaf: a recovered connect that delivered nothing
/// it owed ([`empty_recoveries`]), or a last connect that said "recovered" and then missed
/// something acknowledged after it?
fn deaf_after_recovery(s: &Seen, e: &Sent) -> bool {
    if empty_recoveries(s, e) > 0 {
        return true;
    }
    let Some(&(_, _, at, true)) = s.reconnects.last().filter(|_| s.reconnects.len() > 1) else {
        return false;
    };
    let seqs: BTreeSet<u64> = s.seqs.iter().copied().collect();
    let reports: BTreeSet<u64> = s.reports.iter().copied().collect();
    e.seq_acked_at
        .iter()
        .any(|(q, t)| *t > at && !seqs.contains(q))
        || e.report_acked_at
            .iter()
            .any(|(q, t)| *t > at && !reports.contains(q))
}

/// Messages and reports a client received after a recovered reconnect that had been
/// acknowledged before its `CONNECT` answer: emitted while it was away (or in flight when it
/// dropped), so they came through recovery (its replay, or broadcasts held while it replayed).
fn replayed(s: &Seen, e: &Sent) -> usize {
    // The first connect is a mark too; replays follow the later ones.
    let mut n = 0;
    for (k, &(m0, r0, at, recovered)) in s.reconnects.iter().enumerate().skip(1) {
        if !recovered {
            continue;
        }
        let (m1, r1) = s
            .reconnects
            .get(k + 1)
            .map_or((s.seqs.len(), s.reports.len()), |&(m, r, _, _)| (m, r));
        n += s.seqs[m0..m1]
            .iter()
            .filter(|q| e.seq_acked_at.get(q).is_some_and(|t| *t < at))
            .count();
        n += s.reports[r0..r1]
            .iter()
            .filter(|q| e.report_acked_at.get(q).is_some_and(|t| *t < at))
            .count();
    }
    n
}

#[derive(Default)]
struct Tally {
    replayed: usize,
    /// Clients told "recovered" that then missed what that connect owed them
    /// ([`deaf_after_recovery`]: issue 28's deaf recovered sockets and its retry loop).
    deaf_recovered: usize,
    /// Connects told "recovered" that delivered nothing owed ([`empty_recoveries`]).
    empty_recoveries: usize,
    missing_msgs: usize,
    missing_reports: usize,
    examples: Vec<String>,
    msgs_acked: usize,
    reports_acked: usize,
    uncertain: usize,
    failed_acks: usize,
    events: u64,
    missing: usize,
    duplicates: usize,
    out_of_order: usize,
    unexpected: usize,
    clients_missing: usize,
    clients_duplicated: usize,
    clients_out_of_order: usize,
}

impl Tally {
    fn add(&mut self, m: &Compared, r: &Compared, events: u64, e: &Sent) {
        self.msgs_acked += e.seqs.len();
        self.reports_acked += e.reports.len();
        self.uncertain += e.uncertain_msgs + e.uncertain_reports;
        self.failed_acks += e.failed_acks;
        self.events += events;
        self.missing += m.missing + r.missing;
        self.missing_msgs += m.missing;
        self.missing_reports += r.missing;
        self.duplicates += m.duplicates + r.duplicates;
        self.out_of_order += m.out_of_order + r.out_of_order;
        self.unexpected += m.unexpected + r.unexpected;
        self.clients_missing += usize::from(m.missing + r.missing > 0);
        self.clients_duplicated += usize::from(m.duplicates + r.duplicates > 0);
        self.clients_out_of_order += usize::from(m.out_of_order + r.out_of_order > 0);
    }
}

/// Redis commands during the storm (signal to every client back, plus a second), their excess
/// over the steady traffic's rate, and both per recovered client.
fn redis_figures(
    steady0: &Option<BTreeMap<String, u64>>,
    storm0: &Option<BTreeMap<String, u64>>,
    storm1: &Option<BTreeMap<String, u64>>,
    steady_secs: f64,
    storm_secs: f64,
    recovered: usize,
) -> Value {
    let (Some(s0), Some(t0), Some(t1)) = (steady0, storm0, storm1) else {
        return Value::Null;
    };
    // Our own INFO calls are not the servers' work.
    let without_info = |m: BTreeMap<String, i64>| -> BTreeMap<String, i64> {
        m.into_iter().filter(|(k, _)| k != "info").collect()
    };
    let steady = without_info(redisinfo::delta(s0, t0));
    let storm = without_info(redisinfo::delta(t0, t1));
    let total: i64 = storm.values().sum();
    let mut excess = BTreeMap::new();
    for k in storm.keys().chain(steady.keys()) {
        let expected = steady.get(k).copied().unwrap_or(0) as f64 / steady_secs * storm_secs;
        let got = storm.get(k).copied().unwrap_or(0) as f64;
        excess.insert(k.clone(), got - expected);
    }
    // What the storm added: commands that ran less than in steady traffic (the stopped node's
    // own polling and heartbeats) do not offset what recovery cost.
    let excess_total: f64 = excess.values().filter(|v| **v > 0.0).sum();
    let per = |v: f64| {
        if recovered > 0 {
            Value::from((v / recovered as f64 * 100.0).round() / 100.0)
        } else {
            Value::Null
        }
    };
    let by_cmd: serde_json::Map<String, Value> = excess
        .iter()
        .filter(|(_, v)| v.abs() >= 0.5)
        .map(|(k, v)| (k.clone(), per(*v)))
        .collect();
    json!({
        "steadySecs": (steady_secs * 100.0).round() / 100.0,
        "stormSecs": (storm_secs * 100.0).round() / 100.0,
        "steadyCommands": steady,
        "stormCommands": storm,
        "stormCommandsTotal": total,
        "commandsPerRecoveredClient": per(total as f64),
        "excessPerRecoveredClient": per(excess_total),
        "excessByCommandPerRecoveredClient": by_cmd,
    })
}

/// The `CONNECT` data socket.io-client 4.8 sends: `{ pid, offset, ...auth }` once it has a
/// `pid` (`offset` left out while undefined), else the auth alone.
fn connect_auth(token: &str, pid: Option<&str>, offset: Option<&str>) -> String {
    // Built by hand to keep socket.io-client's key order (serde_json's map sorts its keys).
    let q = |v: &str| Value::from(v).to_string();
    let mut auth = String::from("{");
    if let Some(pid) = pid {
        auth += &format!("\"pid\":{},", q(pid));
        if let Some(offset) = offset {
            auth += &format!("\"offset\":{},", q(offset));
        }
    }
    auth += &format!("\"token\":{}}}", q(token));
    auth
}

/// socket.io-client's `emitEvent` for one event packet: note what the benchmark checks, then
/// `if (this._pid && args.length && typeof args[args.length - 1] === "string") _lastOffset = ...`
/// (`args` is the packet's array, the event name included).
fn on_event(seen: &Mutex<Seen>, frame: &str) {
    let Some(rest) = frame.strip_prefix("42") else {
        return;
    };
    // An event the server wants acked (`42<id>[...]`) never comes here, but skip the id anyway.
    let Some(start) = rest.find('[') else { return };
    let Ok(Value::Array(args)) = serde_json::from_str::<Value>(&rest[start..]) else {
        return;
    };
    let mut s = seen.lock().unwrap();
    s.events += 1;
    match args.first().and_then(Value::as_str) {
        Some("message:new") => {
            if let Some(seq) = args.get(1).and_then(|p| p["message"]["seq"].as_u64()) {
                s.seqs.push(seq);
            }
        }
        Some("receiveReportMessage") => {
            if let Some(k) = args
                .get(1)
                .and_then(|p| p["message"]["title"].as_str())
                .and_then(|t| t.strip_prefix("rs "))
                .and_then(|k| k.parse().ok())
            {
                s.reports.push(k);
            }
        }
        _ => {}
    }
    if s.pid.is_some()
        && let Some(Value::String(offset)) = args.last()
    {
        s.offset = Some(offset.clone());
    }
}

/// One listening client: connects, reconnects like socket.io-client with recovery, and
/// counts how each reconnect went.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn listen(
    i: usize,
    tok: String,
    seen: Arc<Mutex<Seen>>,
    targets: Vec<sio::Target>,
    src: Option<std::net::Ipv4Addr>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<()>,
) -> Listener {
    let mut out = Listener::default();
    let mut node = i % targets.len();
    out.first_node = node;
    let mut first = true;
    // socket.io-client's Manager: every reconnection try waits `backoff_ms(attempts)`, the
    // first one after a drop included; a successful open resets `attempts`.
    let mut attempts = 0u32;
    let mut rng = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stats::now_us();
    let on_frame: sio::OnFrame = {
        let seen = seen.clone();
        Arc::new(move |f: &str| on_event(&seen, f))
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let auth = {
            let s = seen.lock().unwrap();
            connect_auth(&tok, s.pid.as_deref(), s.offset.as_deref())
        };
        // socket.io-client's `onconnect`: `recovered = pid && this._pid === pid; _pid = pid`,
        // before the buffered events are emitted.
        let recovered = Arc::new(AtomicBool::new(false));
        let on_connect = {
            let (seen, recovered) = (seen.clone(), recovered.clone());
            move |answer: &Value| {
                let mut s = seen.lock().unwrap();
                let pid = answer["pid"].as_str().map(str::to_owned);
                let ok = pid.is_some() && pid == s.pid;
                recovered.store(ok, Ordering::SeqCst);
                s.pid = pid;
                let mark = (s.seqs.len(), s.reports.len(), stats::now_us(), ok);
                s.reconnects.push(mark);
            }
        };
        let mut conn =
            match sio::connect_with_auth(&targets[node], &auth, src, on_frame.clone(), on_connect)
                .await
            {
                Ok((c, _)) => c,
                Err(e) => {
                    out.attempts += 1;
                    out.error.get_or_insert(e);
                    // Through a load balancer: the next attempt may reach another node.
                    node = (node + 1) % targets.len();
                    let wait = backoff_ms(attempts, next_rand(&mut rng));
                    attempts += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
        attempts = 0;
        if first {
            first = false;
            let _ = ready.send(());
        } else {
            let after =
                stats::now_us().saturating_sub(shared.kill_at_us.load(Ordering::SeqCst)) / 1000;
            out.reconnects += 1;
            if out.back_after_ms.is_none() {
                out.back_after_ms = Some(after);
                shared.back.fetch_add(1, Ordering::SeqCst);
            }
            if recovered.load(Ordering::SeqCst) {
                out.recovered_reconnects += 1;
                out.recovered_after_ms.get_or_insert(after);
            }
        }
        tokio::select! {
            closed = &mut conn.done => {
                if !out.dropped {
                    out.dropped = true;
                    shared.down.fetch_add(1, Ordering::SeqCst);
                }
                if closed.unwrap_or(false) {
                    out.server_disconnects += 1;
                }
                // The dead node's clients go elsewhere (as through a load balancer), after
                // socket.io-client's first delay.
                node = (node + 1) % targets.len();
                let wait = backoff_ms(attempts, next_rand(&mut rng));
                attempts += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = stop.changed() => {}
                }
            }
            _ = stop.changed() => {
                // `socket.disconnect()`: the session ends, nothing is kept for it.
                conn.close();
                break;
            }
        }
    }
    out
}

/// One staff sender: a message to each of its chats every `msg_every` ms and a report to each
/// chat's user every `rep_every` ms, one of each in flight per chat; reconnects (without
/// recovery) when its node goes away and resends unacknowledged messages with their
/// `clientMessageId`. Returns what was acknowledged, per client index.
async fn send(
    s: usize,
    tok: String,
    own: Vec<(usize, String, String)>,
    target: sio::Target,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<()>,
    (msg_every, rep_every): (u64, u64),
) -> (Vec<(usize, Sent)>, Option<String>) {
    let mut chats: Vec<Chat> = own
        .into_iter()
        .map(|(client, id, user)| Chat {
            client,
            id,
            user,
            next_msg: 0,
            msg: None,
            next_report: 0,
            report: false,
            sent: Sent::default(),
        })
        .collect();
    let n = chats.len().max(1) as u64;
    let mut error = None;
    let mut first = true;
    let mut next_ack = 0u64;
    let mut acks: HashMap<u64, Kind> = HashMap::new();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, String)>();
    let on_frame: sio::OnFrame = Arc::new(move |f: &str| {
        if let Some((id, body)) = sio::parse_ack(f) {
            let _ = ack_tx.send((id, body.to_owned()));
        }
    });
    // Skip, not burst: after the senders' own node was gone for a while, carry on at the
    // rate instead of sending every missed turn at once.
    let every =
        |ms: u64| Duration::from_micros(ms.max(1) * 1000 / n).max(Duration::from_micros(100));
    let mut tick_msg = tokio::time::interval(every(msg_every));
    let mut tick_rep = tokio::time::interval(every(rep_every));
    tick_msg.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick_rep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut cur_msg, mut cur_rep) = (0usize, 0usize);
    let mut stop_until: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    'conn: loop {
        let mut conn = match sio::connect(&target, &tok, None, on_frame.clone()).await {
            Ok(c) => c,
            Err(e) => {
                error.get_or_insert(format!("sender {s}: {e}"));
                if stop_until.is_some_and(|u| Instant::now() > u) {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if first {
            first = false;
            let _ = ready.send(());
        }
        // What was in flight on the old connection: messages are resent (same
        // `clientMessageId`), reports become uncertain.
        acks.clear();
        for ch in &mut chats {
            if let Some((k, _)) = ch.msg {
                ch.msg = Some((k, true));
            }
            if ch.report {
                ch.report = false;
                ch.sent.uncertain_reports += 1;
            }
        }
        for (idx, ch) in chats.iter_mut().enumerate() {
            if ch.msg.is_some_and(|(_, again)| again) {
                send_msg(&conn, ch, idx, &mut next_ack, &mut acks);
            }
        }
        loop {
            let sending = shared.sending.load(Ordering::Relaxed);
            if !sending {
                let until =
                    *stop_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
                if chats.iter().all(|c| c.msg.is_none() && !c.report) || Instant::now() > until {
                    conn.close();
                    break 'conn;
                }
            }
            tokio::select! {
                _ = &mut conn.done => {
                    if stop_until.is_some_and(|u| Instant::now() > u) {
                        break 'conn;
                    }
                    continue 'conn;
                }
                _ = tick_msg.tick() => {
                    if sending && !chats.is_empty() {
                        let idx = cur_msg % chats.len();
                        cur_msg += 1;
                        let ch = &mut chats[idx];
                        if ch.msg.is_none() {
                            ch.next_msg += 1;
                            ch.msg = Some((ch.next_msg, true));
                        }
                        if ch.msg.is_some_and(|(_, again)| again) {
                            send_msg(&conn, ch, idx, &mut next_ack, &mut acks);
                        }
                    }
                }
                _ = tick_rep.tick(), if rep_every > 0 => {
                    if sending && !chats.is_empty() {
                        let idx = cur_rep % chats.len();
                        cur_rep += 1;
                        let ch = &mut chats[idx];
                        if !ch.report {
                            ch.next_report += 1;
                            ch.report = true;
                            next_ack += 1;
                            acks.insert(next_ack, Kind::Report(idx, ch.next_report));
                            conn.send(sio::event_ack(
                                next_ack,
                                "sendReportMessage",
                                &json!({ "userId": ch.user, "title": format!("rs {}", ch.next_report), "message": "recovery benchmark", "status": "Info" }),
                            ));
                        }
                    }
                }
                Some((id, body)) = ack_rx.recv() => {
                    let ok = body.starts_with("[{\"ok\":true");
                    match acks.remove(&id) {
                        Some(Kind::Msg(idx)) => {
                            let ch = &mut chats[idx];
                            let seq = serde_json::from_str::<Value>(&body)
                                .ok()
                                .and_then(|v| v[0]["message"]["seq"].as_u64());
                            match (ok, seq) {
                                (true, Some(seq)) => {
                                    ch.sent.seqs.insert(seq);
                                    ch.sent.seq_acked_at.insert(seq, stats::now_us());
                                    ch.msg = None;
                                }
                                _ => {
                                    // Not saved: send it again (same id) on the next turn.
                                    ch.sent.failed_acks += 1;
                                    if let Some((k, _)) = ch.msg {
                                        ch.msg = Some((k, true));
                                    }
                                    if error.is_none() {
                                        error = Some(format!("sender {s}: message:send {body}"));
                                    }
                                }
                            }
                        }
                        Some(Kind::Report(idx, k)) => {
                            let ch = &mut chats[idx];
                            ch.report = false;
                            if ok {
                                ch.sent.reports.insert(k);
                                ch.sent.report_acked_at.insert(k, stats::now_us());
                            } else {
                                ch.sent.failed_acks += 1;
                                if error.is_none() {
                                    error = Some(format!("sender {s}: sendReportMessage {body}"));
                                }
                            }
                        }
                        None => {}
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)), if !sending => {}
            }
        }
    }
    let out = chats
        .into_iter()
        .map(|mut ch| {
            ch.sent.uncertain_msgs += usize::from(ch.msg.is_some());
            ch.sent.uncertain_reports += usize::from(ch.report);
            (ch.client, ch.sent)
        })
        .collect();
    (out, error)
}

#[derive(Clone, Copy)]
enum Kind {
    Msg(usize),
    Report(usize, u64),
}

/// One sender's view of one chat.
struct Chat {
    client: usize,
    id: String,
    user: String,
    next_msg: u64,
    /// The message in flight (its `clientMessageId` counter) and whether it still has to be
    /// (re)sent on the current connection.
    msg: Option<(u64, bool)>,
    next_report: u64,
    /// A report in flight.
    report: bool,
    sent: Sent,
}

/// Sends (or resends, same `clientMessageId`) the chat's message in flight.
fn send_msg(
    conn: &sio::Conn,
    ch: &mut Chat,
    idx: usize,
    next_ack: &mut u64,
    acks: &mut HashMap<u64, Kind>,
) {
    let Some((k, _)) = ch.msg else { return };
    *next_ack += 1;
    acks.insert(*next_ack, Kind::Msg(idx));
    conn.send(sio::event_ack(
        *next_ack,
        "message:send",
        &json!({ "chatId": ch.id, "message": { "content": format!("rs {k}") }, "clientMessageId": format!("rs{}-{k}", ch.client) }),
    ));
    ch.msg = Some((k, false));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_is_socket_io_clients() {
        // rand 0.0: floor(0) even, deviation 0.
        assert_eq!(backoff_ms(0, 0.0), 1000);
        // rand 0.15: floor(1.5) = 1 odd: 1000 + floor(0.15 * 0.5 * 1000) = 1075.
        assert_eq!(backoff_ms(0, 0.15), 1075);
        // rand 0.99: floor(9.9) = 9 odd: 1000 + 495.
        assert_eq!(backoff_ms(0, 0.99), 1495);
        // rand 0.4: even: 2000 - 400.
        assert_eq!(backoff_ms(1, 0.4), 1600);
        assert_eq!(backoff_ms(3, 0.0), 5000, "capped");
        assert_eq!(backoff_ms(40, 0.99), 5000);
    }

    #[test]
    fn connect_auth_is_what_socket_io_client_sends() {
        assert_eq!(connect_auth("t", None, Some("1-1")), r#"{"token":"t"}"#);
        assert_eq!(
            connect_auth("t", Some("p"), None),
            r#"{"pid":"p","token":"t"}"#
        );
        assert_eq!(
            connect_auth("t", Some("p"), Some("5-0")),
            r#"{"pid":"p","offset":"5-0","token":"t"}"#
        );
    }

    #[test]
    fn the_offset_is_the_last_string_argument_once_a_pid_is_known() {
        let seen = Mutex::new(Seen::default());
        on_event(&seen, r#"42["message:new",{"message":{"seq":1}},"1-0"]"#);
        assert_eq!(seen.lock().unwrap().offset, None, "no pid yet");
        seen.lock().unwrap().pid = Some("p".into());
        on_event(&seen, r#"42["message:new",{"message":{"seq":2}},"2-0"]"#);
        on_event(&seen, r#"42["user:typing",{"isTyping":true}]"#);
        let s = seen.lock().unwrap();
        assert_eq!(
            s.offset.as_deref(),
            Some("2-0"),
            "an event without one keeps it"
        );
        assert_eq!(s.seqs, [1, 2]);
        assert_eq!(s.events, 3);
    }

    /// The journal's 30,000-client run: a client told `recovered` three times, each attempt
    /// closed before its replay, counted deaf although nothing was acknowledged after its last
    /// connect.
    #[test]
    fn a_client_told_recovered_and_given_nothing_it_was_owed_is_deaf() {
        let sent = Sent {
            seqs: [1, 2, 3].into(),
            seq_acked_at: [(1, 100), (2, 300), (3, 400)].into(),
            ..Sent::default()
        };
        let looping = Seen {
            seqs: vec![1],
            reconnects: vec![(0, 0, 50, false), (1, 0, 500, true), (1, 0, 900, true)],
            ..Seen::default()
        };
        assert_eq!(empty_recoveries(&looping, &sent), 2);
        assert!(deaf_after_recovery(&looping, &sent));

        let served = Seen {
            seqs: vec![1, 2, 3],
            reconnects: vec![(0, 0, 50, false), (1, 0, 500, true)],
            ..Seen::default()
        };
        assert_eq!(empty_recoveries(&served, &sent), 0);
        assert!(!deaf_after_recovery(&served, &sent));

        // Nothing owed: a recovered connect that delivered nothing is not deaf.
        let idle = Seen {
            seqs: vec![1, 2, 3],
            reconnects: vec![(0, 0, 50, false), (3, 0, 500, true)],
            ..Seen::default()
        };
        assert!(!deaf_after_recovery(&idle, &sent));
    }

    #[test]
    fn a_received_sequence_is_checked_against_the_acknowledged_one() {
        let acked: BTreeSet<u64> = [1, 2, 3, 4].into();
        let c = compare(&[1, 3, 2, 3, 5], &acked, 0);
        assert_eq!(
            (c.missing, c.duplicates, c.out_of_order, c.unexpected),
            (1, 1, 1, 1)
        );
        assert_eq!(compare(&[1, 2, 3, 4, 5], &acked, 1).unexpected, 0);
    }
}
