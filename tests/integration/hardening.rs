//! Issue #13's network hardening, tried as an attacker meets it: real sockets, real HTTP, a
//! real `redis-server`. Each test failed before its fix.

use std::time::Duration;

use serde_json::json;
use switchboard::domain::Role;

use switchboard::client_events::ClientEvent;

use crate::helpers::{Cluster, Sio, TestNode, Topology, WAIT, eventually, heartbeats_pass};

/// How many sockets a ghost-presence test opens and closes.
const GHOSTS: usize = 100;

/// `count` of `GET /api/socket/active-users`, asked by a staff token.
async fn active_sockets(node: &TestNode) -> u64 {
    let staff = node.token("ghost-watcher", Role::Admin);
    let (status, body) = node
        .call(
            reqwest::Method::GET,
            "/api/socket/active-users?limit=1",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200, "active-users: {body}");
    body["count"].as_u64().unwrap()
}

/// `GET /api/users/{id}/status`'s `status`, asked by a staff token.
async fn status_of(node: &TestNode, id: &str) -> String {
    node.user_status(id).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `user:online` events the node has finished handling, whatever their outcome.
fn user_online_handled(node: &TestNode) -> u64 {
    let m = node.state.metrics.event(Some(ClientEvent::UserOnline));
    m.outcomes.iter().map(|c| c.get()).sum()
}

/// Sockets each send `user:online` and close while it is being handled; none may stay
/// registered, and every user ends offline.
///
/// The race at its worst, every time: the node's test hook holds each `user:online` after its
/// first "is the socket gone" check and before its presence write, until that socket's
/// disconnect has been handled completely (the socket is already out of presence). Only the
/// check after the write can then take the socket out again. (Closing 100 sockets right after
/// their `user:online` never lost this race here, with or without the fix.)
async fn a_user_online_held_past_its_disconnect_leaves_no_ghost(node: &TestNode) {
    let mut sockets = Vec::with_capacity(GHOSTS);
    for i in 0..GHOSTS {
        let id = format!("ghost-{i}");
        sockets.push((node.socket(&id, Role::User).await, id));
    }
    assert!(
        eventually(WAIT, || async {
            active_sockets(node).await == GHOSTS as u64
        })
        .await,
        "every socket registered"
    );
    node.state.test_hooks.hold_registrations();
    let handled = user_online_handled(node);

    for (s, id) in &sockets {
        s.emit("user:online", json!({ "userId": id }));
    }
    assert!(
        eventually(WAIT, || async { node.state.test_hooks.held() == GHOSTS }).await,
        "every user:online held before its presence write ({} held)",
        node.state.test_hooks.held()
    );
    for (s, _) in &sockets {
        s.close();
    }
    // Settled: every disconnect handled, and every held user:online let go and finished.
    assert!(
        eventually(Duration::from_secs(10), || async {
            node.state.metrics.sockets_connected.get() == 0
                && user_online_handled(node) == handled + GHOSTS as u64
        })
        .await,
        "sockets left: {}, user:online handled: {} of {GHOSTS}",
        node.state.metrics.sockets_connected.get(),
        user_online_handled(node) - handled
    );

    let ghosts = active_sockets(node).await;
    assert_eq!(
        ghosts, 0,
        "{ghosts} of {GHOSTS} closed sockets still listed as active"
    );
    let mut online = Vec::new();
    for (_, id) in &sockets {
        if status_of(node, id).await != "offline" {
            online.push(id.as_str());
        }
    }
    assert!(online.is_empty(), "still online: {online:?}");
}

#[tokio::test]
async fn a_late_user_online_never_re_registers_a_closed_socket() {
    let node = TestNode::start().await;
    a_user_online_held_past_its_disconnect_leaves_no_ghost(&node).await;
}

#[tokio::test]
async fn a_late_user_online_never_re_registers_a_closed_socket_in_redis() {
    let cluster = Cluster::build(Topology::Single)
        .named(&["ghost-node"])
        .start()
        .await;
    let node = &cluster[0];
    a_user_online_held_past_its_disconnect_leaves_no_ghost(node).await;
    // Across heartbeats too: the node's resync must not write a ghost back.
    assert!(heartbeats_pass(node, 2).await, "two heartbeats passed");
    assert_eq!(active_sockets(node).await, 0, "after two heartbeats");
}

/// Peak resident memory (`VmHWM`) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Opens a raw WebSocket to the node and reads its Engine.IO open packet.
async fn raw_websocket(
    port: u16,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket opens");
    let open = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("open packet");
    assert!(matches!(open, Some(Ok(_))), "open packet: {open:?}");
    ws
}

/// Sends one text message of `total` bytes in fragments of `fragment` bytes (each frame far
/// below any frame limit); stops at the first write the node refuses. Returns the bytes sent.
async fn send_fragmented(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    total: usize,
    fragment: usize,
) -> usize {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut chunk = vec![b'x'; fragment];
    chunk[..3].copy_from_slice(b"40{");
    let first = bytes::Bytes::from(chunk);
    let rest = bytes::Bytes::from(vec![b'x'; fragment]);
    let mut sent = 0;
    while sent < total {
        let (data, opcode) = if sent == 0 {
            (first.clone(), OpCode::Data(Data::Text))
        } else {
            (rest.clone(), OpCode::Data(Data::Continue))
        };
        let last = sent + fragment >= total;
        let frame = Frame::message(data, opcode, last);
        if ws.send(Message::Frame(frame)).await.is_err() {
            break;
        }
        sent += fragment;
    }
    sent
}

/// Waits until the node closes `ws` (a close frame, an error or the end of the stream).
async fn closed_by_node(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    within: Duration,
) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn an_oversized_fragmented_websocket_message_before_auth_is_refused_and_memory_stays_flat() {
    let data = tempfile::tempdir().unwrap();
    let node = crate::helpers::ProcessNode::start_with_env(data.path(), &[]).await;
    // Warm up: one ordinary socket connects and leaves, so the baseline includes the
    // allocations any connection makes.
    drop(raw_websocket(node.port).await);
    let before = peak_rss_kib(node.pid());

    const ATTACKERS: usize = 4;
    const MESSAGE: usize = 32 << 20;
    let attacks = (0..ATTACKERS).map(|_| async {
        let mut ws = raw_websocket(node.port).await;
        let sent = send_fragmented(&mut ws, MESSAGE, 64 << 10).await;
        (sent, closed_by_node(&mut ws, Duration::from_secs(10)).await)
    });
    let results = futures_util::future::join_all(attacks).await;

    let grown_mib = peak_rss_kib(node.pid()).saturating_sub(before) / 1024;
    for (sent, closed) in results {
        assert!(closed, "the node closed the oversized message's WebSocket");
        assert!(
            sent < MESSAGE,
            "the node stopped reading long before the end ({sent} sent)"
        );
    }
    assert!(
        grown_mib < 32,
        "{ATTACKERS} unauthenticated 32 MiB messages grew the node by {grown_mib} MiB"
    );
}

#[tokio::test]
async fn an_oversized_long_polling_body_is_refused_with_413() {
    let node = TestNode::start().await;
    let base = node.url("/socket.io/?EIO=4&transport=polling");
    let open = node
        .http
        .get(&base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: serde_json::Value = serde_json::from_str(&open[1..]).expect("open packet");
    let sid = open["sid"].as_str().unwrap();

    let body = format!("40{{\"token\":\"{}\"}}", "x".repeat(300 * 1024));
    let res = node
        .http
        .post(format!("{base}&sid={sid}"))
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(res.status().as_u16(), 413);
}

/// Sends `GET /healthz` one header line every `every`, up to `lines` lines; returns how long
/// after connecting the node closed the connection (`None`: still open after the last line).
async fn trickle_headers(
    stream: &mut tokio::net::TcpStream,
    every: Duration,
    lines: usize,
) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = tokio::time::Instant::now();
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .is_err()
    {
        return Some(started.elapsed());
    }
    let mut buf = [0u8; 512];
    for i in 0..lines {
        // The node closing the connection shows as a read of 0 bytes (or an error).
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // An error response before the close: keep reading.
            Err(_) => {
                let line = format!("X-Slow-{i}: {i}\r\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn a_connection_that_trickles_its_headers_is_closed_within_the_timeout() {
    let node = TestNode::start().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();

    // A header line every 2 s, for up to 20 s: well past the 10 s allowed.
    let closed_after = trickle_headers(&mut stream, Duration::from_secs(2), 10).await;

    let closed_after = closed_after.expect("the node closed the slow connection");
    assert!(
        closed_after < Duration::from_secs(13),
        "closed only after {closed_after:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = TestNode::start().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "first request answered"
    );
    let idle_since = tokio::time::Instant::now();

    let end = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await;

    assert!(
        matches!(end, Ok(Ok(0) | Err(_))),
        "the idle connection was closed"
    );
    assert!(idle_since.elapsed() < Duration::from_secs(13));
}

#[tokio::test]
async fn a_websocket_upgrade_from_a_foreign_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let node = TestNode::start_with(|c| c.cors_origins = "http://allowed.example".into()).await;
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
        node.port
    );
    let with_origin = |origin: &str| {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };

    let foreign = tokio_tungstenite::connect_async(with_origin("http://evil.example")).await;
    let allowed = tokio_tungstenite::connect_async(with_origin("http://allowed.example")).await;
    let without = tokio_tungstenite::connect_async(url.as_str()).await;

    match foreign {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 403)
        }
        other => panic!(
            "a foreign origin's upgrade was not refused: {:?}",
            other.map(|r| r.1)
        ),
    }
    assert!(allowed.is_ok(), "an allowed origin upgrades");
    assert!(without.is_ok(), "a client without Origin upgrades");
    let polling = node
        .http
        .get(node.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        polling.status().as_u16(),
        403,
        "foreign long-polling refused"
    );
}

#[tokio::test]
async fn responses_expose_retry_after_to_allowed_origins() {
    let node = TestNode::start_with(|c| c.cors_origins = "http://allowed.example".into()).await;
    let res = node
        .http
        .get(node.url("/healthz"))
        .header("origin", "http://allowed.example")
        .send()
        .await
        .unwrap();
    let exposed = res
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "exposed: {exposed:?}");
}

/// Reads an HTTP response head from `stream` and returns its status code.
async fn response_status(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1)?.parse().ok()
}

#[tokio::test]
async fn an_upload_without_a_token_is_refused_before_its_body_is_read() {
    use tokio::io::AsyncWriteExt;
    let node = TestNode::start().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();

    // Headers announcing 40 MB, and not one byte of body.
    stream
        .write_all(
            b"POST /api/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 40000000\r\n\r\n",
        )
        .await
        .unwrap();

    let status = tokio::time::timeout(WAIT, response_status(&mut stream)).await;
    assert_eq!(status.ok().flatten(), Some(401));
}

#[tokio::test]
async fn an_upload_body_is_capped_even_when_junk_fields_come_before_the_file() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let node = TestNode::start().await;
    let token = node.token("uploader", Role::User);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();

    // A 60 MB text field before any `file`, sent in chunks (no Content-Length to refuse early).
    const JUNK: usize = 60 << 20;
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let sent = sent.clone();
        async move {
            let part = b"--b\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n";
            let mut first = format!("{:x}\r\n", part.len()).into_bytes();
            first.extend_from_slice(part);
            first.extend_from_slice(b"\r\n");
            if write.write_all(&first).await.is_err() {
                return;
            }
            let block = vec![b'j'; 256 << 10];
            let mut chunk = format!("{:x}\r\n", block.len()).into_bytes();
            chunk.extend_from_slice(&block);
            chunk.extend_from_slice(b"\r\n");
            while sent.load(Ordering::Relaxed) < JUNK {
                if write.write_all(&chunk).await.is_err() {
                    return;
                }
                sent.fetch_add(block.len(), Ordering::Relaxed);
            }
        }
    });

    let status = tokio::time::timeout(Duration::from_secs(60), response_status(&mut read)).await;
    let read_through = sent.load(Ordering::Relaxed);
    writer.abort();

    assert_eq!(status.ok().flatten(), Some(413));
    assert!(
        read_through < 20 << 20,
        "the node read {} MiB of junk before refusing",
        read_through >> 20
    );
}

#[tokio::test]
async fn rest_writes_past_the_users_budget_get_429_with_retry_after() {
    // The default budget: 20 writes a second, bursts of 40.
    let node = TestNode::start().await;
    let token = node.token("writer", Role::User);
    let chat = node.open_chat(&token).await;
    let url = node.url(&format!("/api/chats/{chat}/messages"));

    let mut refused = None;
    for i in 0..100 {
        let res = node
            .http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({ "message": { "content": format!("flood {i}") } }))
            .send()
            .await
            .unwrap();
        if res.status().as_u16() == 429 {
            refused = Some((i, res));
            break;
        }
        assert_eq!(res.status().as_u16(), 201, "write {i} within the budget");
    }

    let (i, res) = refused.expect("a flood of REST writes is refused");
    assert!(i >= 39, "the burst of twice the rate passes ({i} did)");
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    // Another user's budget is their own.
    let other = node.token("bystander", Role::User);
    let (status, _) = node
        .call(
            reqwest::Method::POST,
            "/api/chats",
            Some(&other),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn uploads_draw_on_the_same_write_budget() {
    let node = TestNode::start().await;
    let token = node.token("uploader", Role::User);
    // All at once: one after another, on a busy machine, each took long enough for the budget
    // to refill behind it.
    let upload = || async {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
        );
        let res = node
            .http
            .post(node.url("/api/uploads"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        res.status().as_u16()
    };
    let statuses = futures_util::future::join_all((0..60).map(|_| upload())).await;
    assert!(
        statuses.contains(&429) && statuses.iter().all(|s| [201, 429].contains(s)),
        "uploads are limited: {statuses:?}"
    );
}

#[tokio::test]
async fn a_user_cannot_hold_more_than_max_sockets_per_user() {
    // The default maximum: 32 sockets.
    let node = TestNode::start().await;
    let token = node.token("hoarder", Role::User);
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(
            Sio::connect(node.port, Some(&token))
                .await
                .expect("within the maximum"),
        );
    }

    let refused = Sio::connect(node.port, Some(&token)).await;

    match refused {
        Err(crate::helpers::ConnectError::Refused(m)) => {
            assert!(m.starts_with("RATE_LIMITED"), "refused with {m}")
        }
        Ok(_) => panic!("a 33rd socket was accepted"),
        Err(e) => panic!("unexpected failure: {e:?}"),
    }
    // Another user is not affected, and a socket that leaves makes room.
    node.socket("someone-else", Role::User).await;
    held.pop().unwrap().close();
    let again = eventually(WAIT, || async {
        Sio::connect(node.port, Some(&token)).await.is_ok()
    })
    .await;
    assert!(again, "a socket that left makes room for another");
}
