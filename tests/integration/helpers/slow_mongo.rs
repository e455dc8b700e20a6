//! MongoDB made slow at the worst moment: a TCP proxy that, once armed, lets the next insert
//! into `messages` through at once but holds the server's replies on that connection back for
//! a while, so the server writes the message while the node, past its `MONGODB_TIMEOUT_MS`,
//! reports the save `UNAVAILABLE` (as a stalled MongoDB does: found by the chaos soak).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bytes of `insert: "messages"` in a command's BSON document.
const INSERT_MESSAGES: &[u8] = b"\x02insert\x00\x09\x00\x00\x00messages\x00";

pub struct HoldingProxy {
    pub port: u16,
    armed: Arc<AtomicBool>,
}

impl HoldingProxy {
    /// A proxy to the MongoDB-wire server on `server_port`; each reply held back `hold`.
    pub async fn start(server_port: u16, hold: Duration) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("address").port();
        let armed = Arc::new(AtomicBool::new(false));
        let arm = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let armed = arm.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let holding = Arc::new(AtomicBool::new(false));
                    let held = holding.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if held.swap(false, Ordering::SeqCst) {
                                tokio::time::sleep(hold).await;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let insert = buf[..n]
                            .windows(INSERT_MESSAGES.len())
                            .any(|w| w == INSERT_MESSAGES);
                        if insert && armed.swap(false, Ordering::SeqCst) {
                            holding.store(true, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HoldingProxy { port, armed }
    }

    /// Holds the replies to the next insert into `messages` (and what follows it on that
    /// connection) back.
    pub fn hold_next_message_insert(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The connection string nodes use to go through the proxy.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&retryWrites=false",
            self.port
        )
    }
}
