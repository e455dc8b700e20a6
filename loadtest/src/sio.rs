//! A lean Socket.IO v5 / Engine.IO v4 client over one WebSocket: just what the load modes need.
//!
//! One task per connection owns the socket (no split, no second task) and answers Engine.IO
//! pings itself; every other text frame goes to the mode's `on_frame` callback, raw, so a hot
//! receiver can look for its marker without building a JSON tree. The WebSocket read buffer is
//! 4 KiB instead of tungstenite's 128 KiB default, which is zero-filled on every read and burns
//! the generator's CPU.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Called with every Socket.IO packet that is not an Engine.IO ping.
pub type OnFrame = Arc<dyn Fn(&str) + Send + Sync>;

/// How long a handshake (TCP, WebSocket upgrade, Socket.IO connect) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A node to connect to, from a URL like `http://127.0.0.1:5001`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .trim_start_matches("http://")
            .trim_start_matches("ws://")
            .trim_end_matches('/');
        let addr: SocketAddr = rest
            .parse()
            .map_err(|e| format!("{url}: want http://IP:PORT ({e})"))?;
        Ok(Target {
            addr,
            host: rest.to_owned(),
        })
    }
}

/// An open connection. Dropping it does not close it; [`Conn::close`] does.
pub struct Conn {
    tx: mpsc::UnboundedSender<Message>,
    /// Finishes when the connection is closed, by either side: `true` when the server ended
    /// the Socket.IO session with a `DISCONNECT` packet (after which socket.io-client would
    /// not reconnect by itself), `false` for a closed transport.
    pub done: JoinHandle<bool>,
}

impl Conn {
    /// Sends one raw Socket.IO packet (`42[...]`, `42<ackId>[...]`).
    pub fn send(&self, packet: String) -> bool {
        self.tx.send(Message::text(packet)).is_ok()
    }

    pub fn close(&self) {
        let _ = self.tx.send(Message::text("41"));
        let _ = self.tx.send(Message::Close(None));
    }

    pub fn is_open(&self) -> bool {
        !self.done.is_finished()
    }
}

/// Connects with `{ token }` as auth, from `src` when given (spreads source ports over
/// 127.0.0.x), and returns once the Socket.IO connect succeeded.
pub async fn connect(
    target: &Target,
    token: &str,
    src: Option<Ipv4Addr>,
    on_frame: OnFrame,
) -> Result<Conn, String> {
    let auth = format!("{{\"token\":\"{token}\"}}");
    connect_with_auth(target, &auth, src, on_frame, |_| {})
        .await
        .map(|(conn, _)| conn)
}

/// Connects with `auth` (a JSON object, sent as the `CONNECT` packet's data) and returns the
/// connection and the data of the server's `CONNECT` answer (`{ sid, pid? }`).
///
/// Like socket.io-client: `on_connect` runs with the answer before any event reaches
/// `on_frame`, and events the server sent before its answer are handed to `on_frame` right
/// after it, in order (socket.io-client buffers them and emits them after `connect`).
pub async fn connect_with_auth(
    target: &Target,
    auth: &str,
    src: Option<Ipv4Addr>,
    on_frame: OnFrame,
    on_connect: impl FnOnce(&serde_json::Value),
) -> Result<(Conn, serde_json::Value), String> {
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        connect_inner(target, auth, src, on_frame, on_connect),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
}

async fn connect_inner(
    target: &Target,
    auth: &str,
    src: Option<Ipv4Addr>,
    on_frame: OnFrame,
    on_connect: impl FnOnce(&serde_json::Value),
) -> Result<(Conn, serde_json::Value), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(ip) = src {
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", target.host);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
        other => return Err(format!("no Engine.IO open packet: {other:?}")),
    }
    ws.send(Message::text(format!("40{auth}")))
        .await
        .map_err(|e| e.to_string())?;
    // Events that arrive before the answer (a server may send them early); kept in order.
    let mut early = Vec::new();
    let answer = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Some(body) = t.strip_prefix("40") {
                    break serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
                } else if let Some(body) = t.strip_prefix("44") {
                    return Err(format!("refused: {body}"));
                } else if t.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                } else if t.starts_with("42") {
                    early.push(t);
                }
            }
            other => return Err(format!("no connect reply: {other:?}")),
        }
    };
    on_connect(&answer);
    for t in &early {
        on_frame(t.as_str());
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let done = tokio::spawn(async move {
        let mut server_disconnect = false;
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => {
                        let closing = matches!(m, Message::Close(_));
                        if ws.send(m).await.is_err() || closing {
                            break;
                        }
                    }
                    None => break,
                },
                inc = ws.next() => match inc {
                    Some(Ok(Message::Text(t))) => {
                        let t = t.as_str();
                        if t == "2" {
                            if ws.send(Message::text("3")).await.is_err() {
                                break;
                            }
                        } else if t == "1" || t.starts_with("41") {
                            server_disconnect = t.starts_with("41");
                            break;
                        } else {
                            on_frame(t);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
        }
        server_disconnect
    });
    Ok((Conn { tx, done }, answer))
}

/// `42["event",<json>]`
pub fn event(name: &str, data: &serde_json::Value) -> String {
    format!("42[\"{name}\",{data}]")
}

/// `42<id>["event",<json>]`: an event that asks for an ack.
pub fn event_ack(id: u64, name: &str, data: &serde_json::Value) -> String {
    format!("42{id}[\"{name}\",{data}]")
}

/// Splits an ack packet `43<id>[...]` into its id and body.
pub fn parse_ack(frame: &str) -> Option<(u64, &str)> {
    let rest = frame.strip_prefix("43")?;
    let split = rest.find('[')?;
    Some((rest[..split].parse().ok()?, &rest[split..]))
}
