//! Issue #25's HTTP findings, tried as an attacker meets them over real sockets: slow request
//! bodies, stalled uploads and unread downloads (memory and connections read from the node),
//! the upload budget, what `/readyz` tells anyone, and the `METRICS_PORT` listener.
//! Each test failed before its fix.

use std::time::Duration;

use switchboard::domain::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ProcessNode, SECRET, TestNode, WAIT, eventually};

/// The request deadline the tests run nodes with (the default is 30 s).
const REQUEST_TIMEOUT_SECS: u64 = 2;

/// A token for a process node (all test nodes share [`SECRET`]).
fn process_token(id: &str, role: Role) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = switchboard::Config::for_tests(dir.path().to_owned());
    cfg.jwt_secret = Some(SECRET.into());
    switchboard::auth::Keys::load(&cfg)
        .unwrap()
        .verifier
        .issue(id, role, None, Duration::from_secs(3600))
        .unwrap()
}

/// One field of `/proc/PID/status`, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc/PID/status")
}

/// Sockets the process holds open (its file descriptors that are sockets): the node's open
/// connections plus its listeners and client connections.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Opens an Engine.IO long-polling session (anonymous: no Socket.IO CONNECT yet) and returns
/// its sid.
async fn polling_session(port: u16) -> String {
    let body = reqwest::get(format!(
        "http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let open: serde_json::Value = serde_json::from_str(body.trim_start_matches('0')).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// Whether `stream` has been closed by the node (end of stream or an error), reading and
/// dropping whatever the node sent before (an error answer).
async fn closed_by_node(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

// --- 6. slow request bodies -----------------------------------------------------------------

#[tokio::test]
async fn trickling_polling_bodies_are_cut_off_by_the_request_deadline() {
    const SLOW: usize = 20;
    let node =
        TestNode::start_with(|c| c.request_timeout = Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .await;
    let baseline = node.state.connections.open();

    // Anonymous polling POSTs announcing 1,000 bytes and sending one every 500 ms.
    let mut streams = Vec::new();
    for _ in 0..SLOW {
        let sid = polling_session(node.port).await;
        let mut stream = TcpStream::connect(("127.0.0.1", node.port)).await.unwrap();
        let head = format!(
            "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 1000\r\n\r\n4"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    let (readers, mut writers): (Vec<_>, Vec<_>) =
        streams.into_iter().map(TcpStream::into_split).unzip();
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            for w in &mut writers {
                let _ = w.write_all(b"x").await;
            }
        }
    });
    assert!(
        node.state.connections.open() >= baseline + SLOW,
        "the slow requests are open"
    );

    // Cut off by the 2 s deadline, well before the 10 s a keep-alive connection may idle.
    let closed = eventually(Duration::from_secs(8), || async {
        node.state.connections.open() <= baseline
    })
    .await;
    let open = node.state.connections.open();
    trickle.abort();
    assert!(
        closed,
        "{open} connections still open (baseline {baseline}) 8 s into a 2 s deadline"
    );
    // The clients see their connections end.
    for mut r in readers {
        assert!(
            closed_by_node(&mut r, WAIT).await,
            "the client saw the close"
        );
    }
}

// --- 5. uploads and downloads: memory, deadlines, budget ------------------------------------

/// A multipart upload of `size` bytes, as raw bytes: the head (with `Content-Length`) and the
/// body.
fn multipart_upload(token: &str, size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'z', size));
    body.extend_from_slice(b"\r\n--b--\r\n");
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    (head.into_bytes(), body)
}

#[tokio::test]
async fn stalled_uploads_and_unread_downloads_keep_memory_bounded_and_are_cut_off() {
    const N: usize = 10;
    const FILE: usize = 10 * 1024 * 1024 - 4096;
    let data = tempfile::tempdir().unwrap();
    let node = ProcessNode::start_with_env(
        data.path(),
        &[("REQUEST_TIMEOUT_SECS", "2"), ("UPLOAD_TIMEOUT_SECS", "4")],
    )
    .await;
    let pid = node.pid();
    let token = process_token("hoarder", Role::User);
    let http = reqwest::Client::new();

    // One 10 MiB file to download.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![b'd'; FILE]).file_name("big.bin"),
    );
    let res = http
        .post(format!("http://127.0.0.1:{}/api/uploads", node.port))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let uploaded: serde_json::Value = res.json().await.unwrap();
    let file_url = uploaded["fileUrl"].as_str().unwrap().to_owned();
    let sockets_before = open_sockets(pid);
    let peak_before = proc_kib(pid, "VmHWM:");

    // Ten uploads that send all but the last 4 KiB of a 10 MiB file, then stall.
    let mut uploads = Vec::new();
    for _ in 0..N {
        let (head, body) = multipart_upload(&token, FILE);
        let mut stream = TcpStream::connect(("127.0.0.1", node.port)).await.unwrap();
        stream.write_all(&head).await.unwrap();
        stream.write_all(&body[..body.len() - 4096]).await.unwrap();
        uploads.push(stream);
    }
    // Ten downloads of the file (a `sig` URL needs no token) whose clients never read.
    let mut downloads = Vec::new();
    for _ in 0..N {
        let mut stream = TcpStream::connect(("127.0.0.1", node.port)).await.unwrap();
        let get = format!("GET {file_url} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(get.as_bytes()).await.unwrap();
        downloads.push(stream);
    }
    let all_open = eventually(WAIT, || async {
        open_sockets(pid) >= sockets_before + 2 * N
    })
    .await;
    assert!(
        all_open,
        "the uploads and downloads are open: {} sockets, {sockets_before} before",
        open_sockets(pid)
    );

    // The node cuts both off: the uploads at their 4 s deadline, the downloads 2 s into their
    // clients reading nothing.
    let cut_off = eventually(Duration::from_secs(15), || async {
        open_sockets(pid) <= sockets_before
    })
    .await;
    let (open, peak_after) = (open_sockets(pid), proc_kib(pid, "VmHWM:"));
    let grew_mib = peak_after.saturating_sub(peak_before) / 1024;
    eprintln!(
        "{N} stalled uploads + {N} unread downloads: peak RSS {} -> {} MiB (+{grew_mib} MiB), \
         sockets {sockets_before} -> {open} (cut off: {cut_off})",
        peak_before / 1024,
        peak_after / 1024
    );
    assert!(
        grew_mib < 40,
        "peak memory grew by {grew_mib} MiB for {N} stalled uploads and {N} unread downloads"
    );
    assert!(
        cut_off,
        "{open} sockets still open (before: {sockets_before}) 15 s into 4 s / 2 s deadlines"
    );
    for mut s in uploads {
        assert!(closed_by_node(&mut s, WAIT).await, "an upload saw its end");
    }
    // A download that was cut off ends short of the file.
    for mut s in downloads {
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => got += n,
                Err(_) => panic!("a download still open after its cut-off"),
            }
        }
        assert!(got < FILE, "a cut-off download delivered all {got} bytes");
    }
    // Nothing of a stalled upload was kept.
    let kept: Vec<_> = std::fs::read_dir(data.path().join("uploads"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(kept.len(), 1, "only the complete upload is kept: {kept:?}");
}

/// Uploads `size` bytes as `token`; returns the status, the body and the `Retry-After`.
async fn upload(
    node: &TestNode,
    token: &str,
    size: usize,
) -> (u16, serde_json::Value, Option<u64>) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![b'q'; size]).file_name("q.bin"),
    );
    let res = node
        .http
        .post(node.url("/api/uploads"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, res.json().await.unwrap_or_default(), retry)
}

#[tokio::test]
async fn the_upload_budget_refuses_the_upload_past_it_and_keeps_nothing() {
    let node = TestNode::start_with(|c| c.upload_bytes_per_day = 3000).await;
    let token = node.token("budgeted", Role::User);
    let files = || {
        std::fs::read_dir(node.data.path().join("uploads"))
            .unwrap()
            .count()
    };

    let (status, _, _) = upload(&node, &token, 2000).await;
    assert_eq!(status, 201);
    // 2,000 more would pass the 3,000 a day: refused, and nothing kept.
    let (status, body, retry) = upload(&node, &token, 2000).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let retry = retry.expect("Retry-After");
    assert!((1..=86_400).contains(&retry), "Retry-After: {retry}");
    assert_eq!(files(), 1, "the refused upload left no file");
    let since = switchboard::domain::now() - chrono::Duration::days(1);
    assert_eq!(
        node.state
            .store
            .uploaded_bytes_since("budgeted", since)
            .await
            .unwrap(),
        2000
    );
    // What is left still fits; then a single byte more does not.
    let (status, _, _) = upload(&node, &token, 1000).await;
    assert_eq!(status, 201);
    let (status, body, _) = upload(&node, &token, 1).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED"))
    );
    assert_eq!(files(), 2);
    // Another user's budget is their own.
    let other = node.token("other-uploader", Role::User);
    let (status, _, _) = upload(&node, &other, 2000).await;
    assert_eq!(status, 201);
}

// --- 9. /readyz ------------------------------------------------------------------------------

#[tokio::test]
async fn readyz_tells_anyone_only_ready_or_not() {
    let node = TestNode::start_with(|c| c.node_id = Some("secret-node-7".into())).await;
    let anonymous = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 200);
    let text = anonymous.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "ready": true }),
        "anonymous /readyz: {text}"
    );
    assert!(!text.contains("secret-node-7"));

    // A user token learns no more; a staff token gets the details.
    let user = node.token("curious", Role::User);
    let (_, body) = node
        .call(reqwest::Method::GET, "/readyz", Some(&user), None)
        .await;
    assert_eq!(body, serde_json::json!({ "ready": true }));
    let staff = node.token("ops", Role::Admin);
    let (status, body) = node
        .call(reqwest::Method::GET, "/readyz", Some(&staff), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["node"], "secret-node-7");
    assert_eq!(body["store"], "ok");
}

// --- 10. the METRICS_PORT listener -----------------------------------------------------------

#[tokio::test]
async fn the_metrics_port_binds_loopback_by_default_even_when_host_is_every_address() {
    let (node, metrics) = TestNode::start_with_metrics_port(|c| c.host = "0.0.0.0".into()).await;
    // 127.0.0.2 is this host too, but not the loopback address a 127.0.0.1 bind accepts.
    let other = TcpStream::connect(("127.0.0.2", metrics)).await;
    assert!(other.is_err(), "the metrics port answered on 127.0.0.2");
    let main = TcpStream::connect(("127.0.0.2", node.port)).await;
    assert!(
        main.is_ok(),
        "the main port (HOST=0.0.0.0) answers on 127.0.0.2"
    );
    let res = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    // Exposed deliberately with METRICS_HOST.
    let (_open, exposed) =
        TestNode::start_with_metrics_port(|c| c.metrics_host = "0.0.0.0".into()).await;
    assert!(TcpStream::connect(("127.0.0.2", exposed)).await.is_ok());
}

#[tokio::test]
async fn a_slowloris_on_the_metrics_port_is_closed() {
    let (_node, metrics) = TestNode::start_with_metrics_port(|_| {}).await;
    let mut stream = TcpStream::connect(("127.0.0.1", metrics)).await.unwrap();
    let started = tokio::time::Instant::now();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    // A header line every 2 s, for up to 20 s: well past the 10 s allowed.
    let mut closed_after = None;
    let mut buf = [0u8; 512];
    for i in 0..10 {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {}
            Err(_) => {
                if stream
                    .write_all(format!("X-Slow-{i}: {i}\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    closed_after = Some(started.elapsed());
                    break;
                }
            }
        }
    }
    let closed_after = closed_after.expect("the node closed the slow metrics connection");
    assert!(
        closed_after < Duration::from_secs(13),
        "closed only after {closed_after:?}"
    );
}
