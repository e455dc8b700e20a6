//! A small Socket.IO v5 (Engine.IO v4) client over a real WebSocket, enough to drive a node from
//! Rust tests: connect with `auth`, emit with or without ack, and wait for events with timeouts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for anything by default.
pub const WAIT: Duration = Duration::from_secs(5);

/// A connected Socket.IO client.
pub struct Sio {
    out: mpsc::UnboundedSender<Message>,
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    arrived: Arc<Notify>,
    acks: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_ack: AtomicU64,
    /// Notified when the server closes the connection.
    closed: Arc<Notify>,
    /// Set when the server has closed the connection (for waits that start after it).
    gone: Arc<AtomicBool>,
    pub sid: String,
    /// The connection state recovery session id the CONNECT answer carried, if any.
    pub pid: Option<String>,
    /// The last event's recovery offset (its last argument when that is a string), as
    /// socket.io-client keeps it.
    last_offset: Arc<Mutex<Option<String>>>,
}

/// Why a connection did not succeed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server refused the handshake (`connect_error`) with this message.
    Refused(String),
    /// The connection itself failed (read through `Debug` in failure messages).
    #[allow(dead_code)]
    Transport(String),
}

impl Sio {
    /// Connects to `/` with `{ token }` as auth (or no auth at all).
    pub async fn connect(port: u16, token: Option<&str>) -> Result<Sio, ConnectError> {
        let auth = token.map(|t| json!({ "token": t }));
        Self::connect_with(port, auth).await
    }

    /// Connects with an arbitrary `auth` payload.
    pub async fn connect_with(port: u16, auth: Option<Value>) -> Result<Sio, ConnectError> {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        // Engine.IO open packet.
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with('0') => {}
            other => {
                return Err(ConnectError::Transport(format!(
                    "no open packet: {other:?}"
                )));
            }
        }
        let connect = match &auth {
            Some(a) => format!("40{a}"),
            None => "40".to_owned(),
        };
        sink.send(Message::text(connect))
            .await
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let (sid, pid) = loop {
            match tokio::time::timeout(WAIT, stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Some(body) = t.strip_prefix("40") {
                        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                        break (
                            v["sid"].as_str().unwrap_or_default().to_owned(),
                            v["pid"].as_str().map(str::to_owned),
                        );
                    } else if let Some(body) = t.strip_prefix("44") {
                        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                        return Err(ConnectError::Refused(
                            v["message"].as_str().unwrap_or_default().to_owned(),
                        ));
                    } else if t.as_str() == "2" {
                        let _ = sink.send(Message::text("3")).await;
                    } else if t.as_str() == "1" {
                        // An Engine.IO close: socket.io-client drops what follows and reconnects.
                        return Err(ConnectError::Transport("closed before the answer".into()));
                    }
                }
                other => {
                    return Err(ConnectError::Transport(format!(
                        "no connect reply: {other:?}"
                    )));
                }
            }
        };
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let client = Sio {
            out: out.clone(),
            events: Default::default(),
            arrived: Default::default(),
            acks: Default::default(),
            next_ack: AtomicU64::new(1),
            closed: Default::default(),
            gone: Default::default(),
            sid,
            pid,
            last_offset: Default::default(),
        };
        let last_offset = client.last_offset.clone();
        let (events, arrived, acks, closed, gone) = (
            client.events.clone(),
            client.arrived.clone(),
            client.acks.clone(),
            client.closed.clone(),
            client.gone.clone(),
        );
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                let t = t.as_str();
                if t == "2" {
                    let _ = out.send(Message::text("3"));
                } else if let Some(rest) = t.strip_prefix("42") {
                    if let Ok(Value::Array(mut a)) = serde_json::from_str::<Value>(rest)
                        && !a.is_empty()
                    {
                        let name = a.remove(0).as_str().unwrap_or_default().to_owned();
                        if a.len() > 1
                            && let Some(offset) = a.last().and_then(Value::as_str)
                        {
                            *last_offset.lock().unwrap() = Some(offset.to_owned());
                        }
                        let data = a.into_iter().next().unwrap_or(Value::Null);
                        events.lock().unwrap().push_back((name, data));
                        arrived.notify_waiters();
                    }
                } else if let Some(rest) = t.strip_prefix("43") {
                    let split = rest.find('[').unwrap_or(rest.len());
                    let (id, body) = rest.split_at(split);
                    if let (Ok(id), Ok(Value::Array(a))) =
                        (id.parse::<u64>(), serde_json::from_str::<Value>(body))
                        && let Some(tx) = acks.lock().unwrap().remove(&id)
                    {
                        let _ = tx.send(a.into_iter().next().unwrap_or(Value::Null));
                    }
                } else if t.starts_with("41") || t.starts_with('1') {
                    break;
                }
            }
            gone.store(true, Ordering::SeqCst);
            closed.notify_waiters();
            arrived.notify_waiters();
        });
        Ok(client)
    }

    /// The last event's recovery offset (see the field).
    pub fn last_offset(&self) -> Option<String> {
        self.last_offset.lock().unwrap().clone()
    }

    /// Emits an event with no ack.
    pub fn emit(&self, event: &str, data: Value) {
        let _ = self
            .out
            .send(Message::text(format!("42{}", json!([event, data]))));
    }

    /// Emits `[event, data]` as a binary event whose `data` holds one attachment placeholder
    /// (`{"_placeholder":true,"num":0}`), sends `attachment`, and waits for the ack.
    pub async fn ack_binary(&self, event: &str, data: Value, attachment: Vec<u8>) -> Value {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let _ = self
            .out
            .send(Message::text(format!("451-{id}{}", json!([event, data]))));
        let _ = self.out.send(Message::binary(attachment));
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("ack for a binary event")
            .expect("ack channel open")
    }

    /// Emits an event with an ack and waits for the ack's first argument.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        self.ack_args(event, vec![data]).await
    }

    /// Emits an event with any arguments and waits for the ack.
    pub async fn ack_args(&self, event: &str, args: Vec<Value>) -> Value {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let mut packet = vec![Value::String(event.to_owned())];
        packet.extend(args);
        let _ = self
            .out
            .send(Message::text(format!("42{id}{}", Value::Array(packet))));
        tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for {event} within {WAIT:?}"))
            .expect("ack channel closed")
    }

    /// Waits for the next `name` event (events of other names stay queued).
    pub async fn event(&self, name: &str) -> Value {
        self.try_event(name, WAIT)
            .await
            .unwrap_or_else(|| panic!("no '{name}' event within {WAIT:?}"))
    }

    /// Waits up to `within` for the next `name` event.
    pub async fn try_event(&self, name: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            {
                let mut q = self.events.lock().unwrap();
                if let Some(i) = q.iter().position(|(n, _)| n == name) {
                    return q.remove(i).map(|(_, v)| v);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Every queued `name` event, removed from the queue, without waiting.
    pub fn drain(&self, name: &str) -> Vec<Value> {
        let mut q = self.events.lock().unwrap();
        let (hit, keep): (Vec<_>, Vec<_>) = q.drain(..).partition(|(n, _)| n == name);
        q.extend(keep);
        hit.into_iter().map(|(_, v)| v).collect()
    }

    /// Waits until the server closes this connection (true at once if it already has).
    pub async fn closed(&self, within: Duration) -> bool {
        let notified = self.closed.notified();
        if self.out.is_closed() || self.gone.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::timeout(within, notified).await.is_ok()
    }

    /// Emits an event with an ack and waits up to `within` for it; `None` when no ack came
    /// (the server closed the connection first, or took too long).
    pub async fn try_ack(&self, event: &str, data: Value, within: Duration) -> Option<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let _ = self
            .out
            .send(Message::text(format!("42{id}{}", json!([event, data]))));
        tokio::select! {
            ack = tokio::time::timeout(within, &mut rx) => ack.ok()?.ok(),
            // An ack that arrived before the close is already in the channel.
            _ = self.closed(within) => rx.try_recv().ok(),
        }
    }

    /// Drops the connection without a Socket.IO disconnect (the WebSocket just closes), as a
    /// network cut does: the server sees a transport close and keeps the recovery session.
    pub fn cut(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    /// Closes the connection (a client-side disconnect).
    pub fn close(&self) {
        let _ = self.out.send(Message::text("41"));
        let _ = self.out.send(Message::Close(None));
    }
}
