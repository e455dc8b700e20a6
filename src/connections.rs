//! The node's TCP connections, closable in paced batches when it drains.
//!
//! socketioxide can close every engine.io transport at once (`SocketIo::close`), or tell one
//! socket "io server disconnect", after which socket.io clients do *not* reconnect. A drain
//! wants neither: it wants clients to reconnect elsewhere, a few hundred at a time. So the
//! listener hands axum connections wrapped in [`Closable`]: a drain flips each connection's
//! gate, the connection reads end-of-stream and fails its writes, the transport closes, and the
//! client reconnects through the load balancer, batch by batch.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// One connection's switch.
#[derive(Default)]
struct Gate {
    /// Set by a drain: from then on the connection reads end-of-stream and fails its writes.
    closed: AtomicBool,
    /// The task reading the connection, woken when the gate closes.
    reader: AtomicWaker,
}

/// Every open connection of a listener.
#[derive(Default, Clone)]
pub struct TcpConnections {
    /// Weak, so a connection that ends by itself frees its gate; pruned as connections come.
    gates: Arc<Mutex<Vec<Weak<Gate>>>>,
}

impl TcpConnections {
    fn track(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Prune when half the entries may be dead, so the list stays proportional to the
        // connections that are open, at an amortized O(1) per accept.
        if gates.len() >= 64 && gates.len().is_power_of_two() {
            gates.retain(|g| g.strong_count() > 0);
        }
        gates.push(Arc::downgrade(&gate));
        gate
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.iter().filter(|g| g.strong_count() > 0).count()
    }

    /// Closes every open connection, `batch` at a time with `pause` in between.
    pub async fn close_paced(&self, batch: usize, pause: Duration) {
        let open: Vec<Arc<Gate>> = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            let open = gates.iter().filter_map(Weak::upgrade).collect();
            gates.clear();
            open
        };
        for (i, chunk) in open.chunks(batch.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            for gate in chunk {
                gate.closed.store(true, Ordering::Release);
                gate.reader.wake();
            }
        }
    }

    /// Wraps a bound listener so that its connections are tracked here.
    pub fn listener(&self, inner: TcpListener) -> TrackedListener {
        TrackedListener {
            inner,
            connections: self.clone(),
        }
    }
}

/// A listener whose connections a drain can close.
pub struct TrackedListener {
    /// The bound socket (bound by `Application::build`, so tests learn the port first).
    inner: TcpListener,
    /// Where each accepted connection's gate is registered.
    connections: TcpConnections,
}

impl TrackedListener {
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

impl axum::serve::Listener for TrackedListener {
    type Io = Closable;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Closable, std::net::SocketAddr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            Closable {
                stream,
                gate: self.connections.track(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection's TCP peer address, as handlers see it through `ConnectInfo<PeerAddr>` (the
/// development console mints tokens only for loopback peers).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TrackedListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TrackedListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// A TCP connection that reads end-of-stream, and fails writes, once its gate closes.
pub struct Closable {
    /// The accepted connection.
    stream: TcpStream,
    /// Its switch; the listener's [`TcpConnections`] holds it weakly.
    gate: Arc<Gate>,
}

impl Closable {
    fn is_closed(&self) -> bool {
        self.gate.closed.load(Ordering::Acquire)
    }
}

impl AsyncRead for Closable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.gate.reader.register(cx.waker());
        if this.is_closed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Closable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_closed() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut this.stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_closed() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_paced_close_ends_every_tracked_connection_and_clients_see_it() {
        let connections = TcpConnections::default();
        let mut listener = connections.listener(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut served = Vec::new();
        for _ in 0..5 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (mut conn, _) = axum::serve::Listener::accept(&mut listener).await;
            // The server side echoes until its connection ends.
            served.push(tokio::spawn(async move {
                let mut buf = [0u8; 16];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
        assert_eq!(connections.open(), 5);
        clients[0].write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        clients[0].read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");

        connections.close_paced(2, Duration::from_millis(10)).await;

        for task in served {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server side ended")
                .unwrap();
        }
        for mut client in clients {
            let mut buf = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("client sees the close");
            assert!(matches!(n, Ok(0) | Err(_)));
        }
        assert_eq!(connections.open(), 0);
    }
}
