//! Whether the node is draining, and the client events it is handling now: a drain turns
//! `/readyz` 503 and refuses handshakes from its start, and waits for those events to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prometheus::IntGauge;

/// The node's drain state.
pub struct Drain {
    /// Set once a drain starts.
    draining: AtomicBool,
    /// Client events being handled now; shared with each event's [`InFlight`] guard.
    in_flight: Arc<AtomicUsize>,
    /// `switchboard_draining`: 1 from the drain's start.
    gauge: IntGauge,
}

impl Drain {
    /// A node that is not draining and handles no event yet.
    pub fn new(gauge: IntGauge) -> Self {
        Drain {
            draining: AtomicBool::new(false),
            in_flight: Arc::default(),
            gauge,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the node as draining: from now on `/readyz` is 503 and handshakes are refused.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.gauge.set(1);
    }

    /// Client events being handled now.
    pub fn events_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Marks a client event as in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.in_flight.clone())
    }
}

/// Keeps a client event counted as in flight.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
