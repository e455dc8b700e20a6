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
        if packets.len() == 1 && matches!(packets[0], Packet::Message(_)) {
            if let Some(Packet::Message(msg)) = packets.pop() {
                return Entry::Message(msg);
            }
        }
        Entry::Packets(Box::new(packets))
    }
}

impl Entry {
    pub(crate) fn into_packets(self) -> PacketBuf {
        match self {
            Entry::Message(msg) => smallvec::smallvec![Packet::Message(msg)],
            Entry::Packets(packets) => *packets,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buffered: VecDeque<Entry>,
    volatile: Option<Entry>,
    /// Slots promised to outstanding [`QueuePermit`]s.
    reserved: usize,
    closed: bool,
    /// A packet queued wakes the receiver only once this many wait (0: always). Raised while the
    /// receiver holds packets back on purpose ([`PacketQueue::poll_backlog`]).
    wake_at: u32,
}

impl State {
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
    rx_waker: AtomicWaker,
    closed_notify: Notify,
}

/// One reserved slot in a [`PacketQueue`]; released if dropped unused.
pub(crate) struct QueuePermit<'a> {
    queue: &'a PacketQueue,
}

impl QueuePermit<'_> {
    pub(crate) fn send(self, entry: impl Into<Entry>) {
        let entry = entry.into();
        let queue = self.queue;
        std::mem::forget(self);
        {
            let mut state = queue.lock();
            state.reserved -= 1;
            // A permit taken before a close still delivers: the receiver drains after a close.
            state.buffered.push_back(entry);
            if !state.wakes() {
                return;
            }
        }
        queue.rx_waker.wake();
    }
}

impl Drop for QueuePermit<'_> {
    fn drop(&mut self) {
        self.queue.lock().reserved -= 1;
    }
}

impl PacketQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            rx_waker: AtomicWaker::new(),
            closed_notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the state if something ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue packets if there is room and the queue is open.
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(TrySendError::Closed(packets));
            }
            if state.buffered.len() + state.reserved >= self.capacity {
                return Err(TrySendError::Full(packets));
            }
            state.buffered.push_back(packets.into());
            if !state.wakes() {
                return Ok(());
            }
        }
        self.rx_waker.wake();
        Ok(())
    }

    /// Queue packets whatever the capacity (control packets such as the upgrade's NOOP).
    pub(crate) fn force_send(&self, packets: PacketBuf) -> Result<(), PacketBuf> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(packets);
            }
            state.buffered.push_back(packets.into());
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
        self.rx_waker.wake();
        self.closed_notify.notify_waiters();
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
        let q = PacketQueue::new(8);
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
        let q = PacketQueue::new(2);
        let permit = q.try_reserve().unwrap();
        q.try_send(ping()).unwrap();
        assert!(matches!(q.try_send(ping()), Err(TrySendError::Full(_))));
        drop(permit);
        q.try_send(ping()).unwrap();
        assert!(q.try_recv().is_some());
        assert!(q.try_recv().is_some());
        assert!(q.try_recv().is_none());
    }

    #[test]
    fn a_closed_queue_drains_then_ends() {
        let q = PacketQueue::new(4);
        q.try_send(ping()).unwrap();
        q.close();
        assert!(matches!(q.try_send(ping()), Err(TrySendError::Closed(_))));
        assert!(q.try_reserve().is_err());
        assert!(!q.send_volatile(ping()));
        assert!(q.try_recv().is_some());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(q.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn volatile_keeps_only_the_latest_and_comes_after_the_buffer() {
        let q = PacketQueue::new(4);
        q.send_volatile(smallvec![Packet::Noop]);
        q.send_volatile(smallvec![Packet::Pong]);
        q.try_send(ping()).unwrap();
        assert_eq!(q.try_recv().unwrap().into_packets()[0], Packet::Ping);
        assert_eq!(q.try_recv().unwrap().into_packets()[0], Packet::Pong);
        assert!(q.try_recv().is_none());
    }

    #[test]
    fn a_lone_message_is_queued_unwrapped_and_comes_out_the_same() {
        let q = PacketQueue::new(4);
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
        let q = PacketQueue::new(1024);
        for _ in 0..100 {
            q.try_send(ping()).unwrap();
        }
        while q.try_recv().is_some() {}
        assert!(q.lock().buffered.capacity() <= RETAINED_CAPACITY);
    }
}
