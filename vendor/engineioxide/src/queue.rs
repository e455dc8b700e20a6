//! The outgoing packet queue of one socket (Switchboard patch).
//!
//! Upstream keeps a `tokio::sync::mpsc` channel per socket. Such a channel allocates its first
//! block of 32 slots (about 5 KiB of `PacketBuf`s) when it is created, so every idle connection
//! paid for it. This queue lives inline in the [`Socket`](crate::Socket) and holds [`Entry`]s of
//! 32 bytes (a lone message, the usual case, is not wrapped in a 168-byte `PacketBuf`); it
//! allocates when the first packet waits and keeps room for a few (128 bytes), so a broadcast to
//! many sockets does not allocate and free one buffer per socket. It keeps the channel's
//! semantics: a bounded buffer with reservations, a close that still lets the receiver drain what
//! was queued, and one "volatile" slot that only keeps the latest packet, read after the buffer.
//!
//! It is also bounded in bytes (a second Switchboard patch): a packet that would take a non-empty
//! buffer past `max_bytes` empties and closes the queue instead ([`Pushed::Overflowed`]), and the
//! socket closes its session. A client that stops reading (a long-polling session that only
//! POSTs, a WebSocket that stops reading) could otherwise make the server hold `capacity` replies
//! of any size each.

use std::{
    collections::VecDeque,
    sync::Mutex,
    task::{Context, Poll},
};

use engineioxide_core::{Packet, PacketBuf, Str};
use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, mpsc::error::TrySendError};

/// Room kept after the queue drains; a burst beyond it is given back.
const RETAINED_CAPACITY: usize = 4;

/// Packets sent together (adjacent packets, e.g. a message and its binary attachments).
#[derive(Debug)]
pub(crate) enum Entry {
    /// One message packet.
    Message(Str),
    /// Anything else, boxed: a `PacketBuf` is 168 bytes.
    Packets(Box<PacketBuf>),
}

impl From<PacketBuf> for Entry {
    fn from(mut packets: PacketBuf) -> Self {
        if packets.len() == 1
            && matches!(packets[0], Packet::Message(_))
            && let Some(Packet::Message(msg)) = packets.pop()
        {
            return Entry::Message(msg);
        }
        Entry::Packets(Box::new(packets))
    }
}

impl Entry {
    /// The bytes this entry holds, as counted against the queue's byte bound.
    fn bytes(&self) -> usize {
        match self {
            Entry::Message(msg) => msg.len(),
            Entry::Packets(packets) => packets_bytes(packets),
        }
    }

    pub(crate) fn into_packets(self) -> PacketBuf {
        match self {
            Entry::Message(msg) => smallvec::smallvec![Packet::Message(msg)],
            Entry::Packets(packets) => *packets,
        }
    }
}

/// The payload bytes of packets (a control packet counts one byte).
fn packets_bytes(packets: &PacketBuf) -> usize {
    packets
        .iter()
        .map(|p| match p {
            Packet::Message(msg) => msg.len(),
            Packet::Binary(bin) | Packet::BinaryV3(bin) => bin.len(),
            _ => 1,
        })
        .sum()
}

/// What became of a packet given to the queue.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Pushed {
    Queued,
    /// It would have taken the queue past its byte bound: the queue dropped what it held and
    /// closed; the caller must close the session.
    Overflowed,
}

/// Why [`PacketQueue::try_send`] did not queue packets.
#[derive(Debug)]
pub(crate) enum SendError<T> {
    Full(T),
    Closed(T),
    /// As [`Pushed::Overflowed`]: the queue is now closed and the session must be closed.
    Overflowed(T),
}

#[derive(Debug, Default)]
struct State {
    buffered: VecDeque<Entry>,
    /// The bytes of `buffered` (the volatile slot, one packet at most, is not counted).
    bytes: usize,
    volatile: Option<Entry>,
    /// Slots promised to outstanding [`QueuePermit`]s.
    reserved: usize,
    closed: bool,
    /// A packet queued wakes the receiver only once this many wait (0: always). Raised while the
    /// receiver holds packets back on purpose ([`PacketQueue::poll_backlog`]).
    wake_at: u32,
}

impl State {
    /// Does an entry of `size` bytes fit? One always does in an empty buffer, however large (a
    /// single big reply must still go out); otherwise the buffer stays within `max_bytes`.
    fn fits(&self, size: usize, max_bytes: usize) -> bool {
        self.bytes == 0 || self.bytes.saturating_add(size) <= max_bytes
    }

    fn push(&mut self, entry: Entry, size: usize) {
        self.bytes += size;
        self.buffered.push_back(entry);
    }

    /// The byte bound was hit: drop everything (the session is being closed, nobody will read
    /// it, and holding it is what the bound is for) and refuse what comes next.
    fn overflow(&mut self) {
        self.buffered = VecDeque::new();
        self.volatile = None;
        self.bytes = 0;
        self.closed = true;
    }

    /// Should a packet just queued wake the receiver?
    fn wakes(&self) -> bool {
        self.waiting() >= self.wake_at as usize
    }

    /// Entries the receiver would get now.
    fn waiting(&self) -> usize {
        self.buffered.len() + usize::from(self.volatile.is_some())
    }
}

/// A bounded multi-producer, single-consumer queue of packets.
#[derive(Debug)]
pub(crate) struct PacketQueue {
    state: Mutex<State>,
    capacity: usize,
    max_bytes: usize,
    rx_waker: AtomicWaker,
    closed_notify: Notify,
}

/// One reserved slot in a [`PacketQueue`]; released if dropped unused.
pub(crate) struct QueuePermit<'a> {
    queue: &'a PacketQueue,
}

impl QueuePermit<'_> {
    /// Queues the entry; [`Pushed::Overflowed`] if it would take the queue past its byte bound
    /// (the size is only known now, not when the slot was reserved).
    pub(crate) fn send(self, entry: impl Into<Entry>) -> Pushed {
        let entry = entry.into();
        let size = entry.bytes();
        let queue = self.queue;
        std::mem::forget(self);
        {
            let mut state = queue.lock();
            state.reserved -= 1;
            if !state.fits(size, queue.max_bytes) {
                if !state.closed {
                    state.overflow();
                    drop(state);
                    queue.on_closed();
                    return Pushed::Overflowed;
                }
                // Already closed (overflowed before, or closing): dropping it loses nothing
                // the closing session would have sent.
                return Pushed::Queued;
            }
            // A permit taken before a close still delivers: the receiver drains after a close.
            state.push(entry, size);
            if !state.wakes() {
                return Pushed::Queued;
            }
        }
        queue.rx_waker.wake();
        Pushed::Queued
    }
}

impl Drop for QueuePermit<'_> {
    fn drop(&mut self) {
        self.queue.lock().reserved -= 1;
    }
}

impl PacketQueue {
    /// A queue of at most `capacity` entries and `max_bytes` bytes (one entry always fits).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            max_bytes,
            rx_waker: AtomicWaker::new(),
            closed_notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the state if something ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue packets if there is room and the queue is open.
    // The packets come back in the error, as with tokio's `mpsc::Sender::try_send`: boxing
    // them would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), SendError<PacketBuf>> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(SendError::Closed(packets));
            }
            if state.buffered.len() + state.reserved >= self.capacity {
                return Err(SendError::Full(packets));
            }
            let size = packets_bytes(&packets);
            if !state.fits(size, self.max_bytes) {
                state.overflow();
                drop(state);
                self.on_closed();
                return Err(SendError::Overflowed(packets));
            }
            state.push(packets.into(), size);
            if !state.wakes() {
                return Ok(());
            }
        }
        self.rx_waker.wake();
        Ok(())
    }

    /// Queue packets whatever the capacity, in packets or bytes (control packets such as the
    /// upgrade's NOOP).
    #[allow(clippy::result_large_err)] // as `try_send`
    pub(crate) fn force_send(&self, packets: PacketBuf) -> Result<(), PacketBuf> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(packets);
            }
            let size = packets_bytes(&packets);
            state.push(packets.into(), size);
            if !state.wakes() {
                return Ok(());
            }
        }
        self.rx_waker.wake();
        Ok(())
    }

    /// Reserve one slot.
    pub(crate) fn try_reserve(&self) -> Result<QueuePermit<'_>, TrySendError<()>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.buffered.len() + state.reserved >= self.capacity {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(QueuePermit { queue: self })
    }

    /// Replace the volatile packet. Returns false once the queue is closed.
    pub(crate) fn send_volatile(&self, packets: PacketBuf) -> bool {
        {
            let mut state = self.lock();
            if state.closed {
                return false;
            }
            state.volatile = Some(packets.into());
            if !state.wakes() {
                return true;
            }
        }
        self.rx_waker.wake();
        true
    }

    /// The next packets: buffered ones first, then the volatile one.
    /// `Ready(None)` once the queue is closed and drained.
    /// Only the holder of the socket's receiver lock may call it (a single consumer).
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Entry>> {
        if let Some(packets) = self.try_recv_with_closed() {
            return packets;
        }
        self.rx_waker.register(cx.waker());
        // Check again: a packet may have arrived before the waker was registered.
        self.try_recv_with_closed().unwrap_or(Poll::Pending)
    }

    /// `Ready` once packets wait or the queue is closed, without taking anything.
    /// Only the holder of the socket's receiver lock may call it (a single consumer).
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_waiting(cx, 0)
    }

    /// `Ready` once half the queue's capacity waits or the queue is closed, without taking
    /// anything: for a receiver that holds packets back to write them together, which must not
    /// let the queue fill up meanwhile. Until then, queued packets do not wake it.
    pub(crate) fn poll_backlog(&self, cx: &mut Context<'_>) -> Poll<()> {
        let half = u32::try_from(self.capacity / 2).unwrap_or(u32::MAX).max(1);
        self.poll_waiting(cx, half)
    }

    fn poll_waiting(&self, cx: &mut Context<'_>, at_least: u32) -> Poll<()> {
        let enough = |state: &State| state.closed || state.waiting() >= (at_least as usize).max(1);
        {
            let mut state = self.lock();
            state.wake_at = at_least;
            if enough(&state) {
                return Poll::Ready(());
            }
        }
        self.rx_waker.register(cx.waker());
        // Check again: a packet may have arrived before the waker was registered.
        if enough(&self.lock()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The next packets, waiting for them (the ws transport waits with [`Self::poll_ready`]).
    #[cfg(feature = "__test_harness")]
    pub(crate) async fn recv(&self) -> Option<Entry> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next packets if any are waiting.
    pub(crate) fn try_recv(&self) -> Option<Entry> {
        match self.try_recv_with_closed() {
            Some(Poll::Ready(packets)) => packets,
            _ => None,
        }
    }

    fn try_recv_with_closed(&self) -> Option<Poll<Option<Entry>>> {
        let mut state = self.lock();
        if let Some(entry) = state.buffered.pop_front() {
            state.bytes -= entry.bytes();
            if state.buffered.is_empty() && state.buffered.capacity() > RETAINED_CAPACITY {
                state.buffered.shrink_to(RETAINED_CAPACITY);
            }
            return Some(Poll::Ready(Some(entry)));
        }
        if let Some(entry) = state.volatile.take() {
            return Some(Poll::Ready(Some(entry)));
        }
        state.closed.then_some(Poll::Ready(None))
    }

    /// Refuse new packets; the receiver still gets what was queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.on_closed();
    }

    fn on_closed(&self) {
        self.rx_waker.wake();
        self.closed_notify.notify_waiters();
    }

    /// The bytes waiting in the buffer.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engineioxide_core::Packet;
    use smallvec::smallvec;

    fn ping() -> PacketBuf {
        smallvec![Packet::Ping]
    }

    /// Counts its wake-ups.
    struct Wakes(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_receiver_holding_back_is_woken_only_by_a_backlog_of_half_the_capacity() {
        let q = PacketQueue::new(8, usize::MAX);
        let wakes = std::sync::Arc::new(Wakes(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let count = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);

        // Waiting for anything: the first packet wakes.
        assert!(q.poll_ready(&mut cx).is_pending());
        q.try_send(ping()).unwrap();
        assert_eq!(count(), 1);
        assert!(q.poll_ready(&mut cx).is_ready());

        // Holding it back: two more (three waiting) do not wake; the fourth does.
        assert!(q.poll_backlog(&mut cx).is_pending());
        q.try_send(ping()).unwrap();
        q.try_send(ping()).unwrap();
        assert_eq!(count(), 1, "below half the capacity");
        q.try_send(ping()).unwrap();
        assert_eq!(count(), 2, "half the capacity waits");
        assert!(q.poll_backlog(&mut cx).is_ready());
        // Nothing was taken.
        assert_eq!((0..4).filter_map(|_| q.try_recv()).count(), 4);

        // Back to waiting for anything.
        assert!(q.poll_ready(&mut cx).is_pending());
        q.try_send(ping()).unwrap();
        assert_eq!(count(), 3);
    }

    #[test]
    fn bounded_with_reservations() {
        let q = PacketQueue::new(2, usize::MAX);
        let permit = q.try_reserve().unwrap();
        q.try_send(ping()).unwrap();
        assert!(matches!(q.try_send(ping()), Err(SendError::Full(_))));
        drop(permit);
        q.try_send(ping()).unwrap();
        assert!(q.try_recv().is_some());
        assert!(q.try_recv().is_some());
        assert!(q.try_recv().is_none());
    }

    #[test]
    fn a_closed_queue_drains_then_ends() {
        let q = PacketQueue::new(4, usize::MAX);
        q.try_send(ping()).unwrap();
        q.close();
        assert!(matches!(q.try_send(ping()), Err(SendError::Closed(_))));
        assert!(q.try_reserve().is_err());
        assert!(!q.send_volatile(ping()));
        assert!(q.try_recv().is_some());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(q.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn volatile_keeps_only_the_latest_and_comes_after_the_buffer() {
        let q = PacketQueue::new(4, usize::MAX);
        q.send_volatile(smallvec![Packet::Noop]);
        q.send_volatile(smallvec![Packet::Pong]);
        q.try_send(ping()).unwrap();
        assert_eq!(q.try_recv().unwrap().into_packets()[0], Packet::Ping);
        assert_eq!(q.try_recv().unwrap().into_packets()[0], Packet::Pong);
        assert!(q.try_recv().is_none());
    }

    #[test]
    fn a_lone_message_is_queued_unwrapped_and_comes_out_the_same() {
        let q = PacketQueue::new(4, usize::MAX);
        q.try_send(smallvec![Packet::Message("hi".into())]).unwrap();
        q.try_send(smallvec![
            Packet::Message("a".into()),
            Packet::Binary(vec![1].into())
        ])
        .unwrap();
        assert!(matches!(q.try_recv(), Some(Entry::Message(m)) if m == "hi"));
        let both = q.try_recv().unwrap().into_packets();
        assert_eq!(both.len(), 2);
        assert!(std::mem::size_of::<Entry>() <= 40, "an entry stays small");
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back_but_a_few_slots() {
        let q = PacketQueue::new(1024, usize::MAX);
        for _ in 0..100 {
            q.try_send(ping()).unwrap();
        }
        while q.try_recv().is_some() {}
        assert!(q.lock().buffered.capacity() <= RETAINED_CAPACITY);
    }

    fn message(len: usize) -> PacketBuf {
        smallvec![Packet::Message("x".repeat(len).into())]
    }

    #[test]
    fn one_packet_of_any_size_fits_an_empty_queue() {
        let q = PacketQueue::new(8, 100);
        q.try_send(message(1000)).unwrap();
        assert_eq!(q.bytes(), 1000);
        assert!(q.try_recv().is_some());
        assert_eq!(q.bytes(), 0);
        q.try_send(message(60)).unwrap();
        q.try_send(message(40)).unwrap();
        assert_eq!(q.bytes(), 100, "exactly the bound is within it");
    }

    #[test]
    fn a_packet_past_the_byte_bound_empties_and_closes_the_queue() {
        let q = PacketQueue::new(8, 100);
        q.try_send(message(60)).unwrap();
        assert!(matches!(
            q.try_send(message(41)),
            Err(SendError::Overflowed(_))
        ));
        assert!(q.is_closed());
        assert_eq!(q.bytes(), 0);
        assert!(q.try_recv().is_none(), "what was queued is dropped");
        assert!(matches!(q.try_send(ping()), Err(SendError::Closed(_))));
    }

    #[test]
    fn a_permit_whose_packet_passes_the_byte_bound_overflows() {
        let q = PacketQueue::new(8, 100);
        q.try_send(message(60)).unwrap();
        let permit = q.try_reserve().unwrap();
        assert_eq!(permit.send(message(41)), Pushed::Overflowed);
        assert!(q.is_closed());
        assert!(q.try_recv().is_none());
        // Within the bound, a permit queues.
        let q = PacketQueue::new(8, 100);
        assert_eq!(q.try_reserve().unwrap().send(message(100)), Pushed::Queued);
        assert_eq!(q.bytes(), 100);
    }
}
