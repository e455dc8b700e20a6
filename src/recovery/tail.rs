//! The per-node tail of the recovery log, and the one reader that fills it: every replay
//! waiting on the node is served by one log read (issue 28).
//!
//! A replay asks for "the log after my offset, complete as of now" ([`TailReader::read`]). The
//! requests go through a [`Batcher`]: those that queue while one read is on its way are served
//! together by the next, which reads only what the tail lacks (the entries after its end, and
//! the gap before its start if a request's offset is older) plus the cut, in one round trip
//! ([`RecoveryBackend::read_ranges`]). The tail's lock is a plain mutex held for copies, never
//! across a backend call: at 30,000 clients a lock held across the reads queued every replay
//! of a node behind one Redis round trip after another, replays passed their deadline, and
//! their clients went round the retry loop (`loadtest/journal/2026-12-07-replay-batching.md`).
//!
//! Each request is answered with a [`Snapshot`], an immutable view of the tail shared by every
//! replay the read served; each replay filters it for its rooms on its own task, outside any
//! lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::batch::Batcher;

use super::backend::{BackendError, LoggedEvent, Offset, RecoveryBackend, now_ms};
use super::refusal::Refusal;

/// The most entries the per-node tail keeps (older ones are read from the backend).
pub const TAIL_CAP: usize = 20_000;

/// How many log entries one backend read returns at most.
const PAGE: usize = 500;

/// The most replays one read serves (answering one is an `Arc` clone).
const READ_BATCH: usize = 4096;

/// A contiguous piece of the log as one read left it: every entry after `from`, in order.
#[derive(Default)]
pub struct Snapshot {
    pub from: Option<Offset>,
    pub entries: Vec<Arc<LoggedEvent>>,
}

impl Snapshot {
    /// The entries after `after` that `keep` accepts, at most `limit`, in log order.
    pub fn after(
        &self,
        after: Offset,
        keep: impl Fn(&LoggedEvent) -> bool,
        limit: usize,
    ) -> Vec<Arc<LoggedEvent>> {
        let start = self.entries.partition_point(|e| e.offset <= after);
        self.entries[start..]
            .iter()
            .filter(|e| keep(e))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The tail: the snapshot the last read left, trimmed to the window and the budget.
#[derive(Default)]
struct Tail {
    now: Arc<Snapshot>,
    /// The entries' [`LoggedEvent::bytes`], summed.
    bytes: u64,
}

impl Tail {
    fn end(&self) -> Option<Offset> {
        self.now.entries.last().map(|e| e.offset).or(self.now.from)
    }

    /// Drops the oldest entries until at most `max_bytes` and [`TAIL_CAP`] entries are left,
    /// and none older than `oldest_ms`.
    fn trim(&mut self, max_bytes: u64, oldest_ms: u64) {
        let entries = &self.now.entries;
        let (mut drop, mut bytes) = (0, self.bytes);
        while let Some(e) = entries.get(drop) {
            if e.offset.ms >= oldest_ms && bytes <= max_bytes && entries.len() - drop <= TAIL_CAP {
                break;
            }
            bytes -= e.bytes();
            drop += 1;
        }
        if drop > 0 {
            self.now = Arc::new(Snapshot {
                from: Some(entries[drop - 1].offset),
                entries: entries[drop..].to_vec(),
            });
            self.bytes = bytes;
        }
    }
}

/// Why a bounded read of the log stopped.
enum ReadError {
    Backend(BackendError),
    /// It would have loaded more than the tail's byte budget or [`TAIL_CAP`] entries.
    OverBudget,
}

/// One range to read: after `after` up to `until` (`None`: the end), at most `max_bytes`.
struct Range {
    after: Offset,
    until: Option<Offset>,
    max_bytes: u64,
    out: Vec<Arc<LoggedEvent>>,
    bytes: u64,
    done: bool,
}

impl Range {
    fn new(after: Offset, until: Option<Offset>, max_bytes: u64) -> Range {
        Range {
            after,
            until,
            max_bytes,
            out: Vec::new(),
            bytes: 0,
            done: false,
        }
    }

    /// Takes one page; `Err` when the range went over its budget.
    fn take(&mut self, page: Vec<LoggedEvent>) -> Result<(), ReadError> {
        self.done = page.len() < PAGE;
        if let Some(last) = page.last() {
            self.after = last.offset;
        }
        for e in page {
            self.bytes += e.bytes();
            if self.bytes > self.max_bytes || self.out.len() >= TAIL_CAP {
                return Err(ReadError::OverBudget);
            }
            self.out.push(Arc::new(e));
        }
        Ok(())
    }
}

/// What the reader shares with [`super::Recovery`]: the tail, the cut, the budget.
pub struct TailState {
    backend: Arc<dyn RecoveryBackend>,
    window_ms: u64,
    /// The tail's byte budget (`RECOVERY_TAIL_MAX_BYTES`).
    max_bytes: AtomicU64,
    /// A plain mutex, held for copies only (never across a backend call).
    tail: Mutex<Tail>,
    /// The newest entry trimmed from the log, as this node last read it: resumes that need it
    /// are refused as expired.
    cut: Mutex<Option<Offset>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TailState {
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// Notes a cut a trim or a read saw.
    pub fn note_cut(&self, cut: Option<Offset>) {
        let mut known = locked(&self.cut);
        *known = (*known).max(cut);
    }

    /// Whether the log has dropped an entry after `from` (exclusive) that a replay from there
    /// would need.
    pub fn cut_after(&self, from: Offset) -> bool {
        locked(&self.cut).is_some_and(|c| c > from)
    }

    /// Trims the tail to the window and its budget (the node's timer, every second); returns
    /// its bytes after it.
    pub fn trim(&self, oldest_ms: u64) -> u64 {
        let mut tail = locked(&self.tail);
        tail.trim(self.max_bytes(), oldest_ms);
        tail.bytes
    }

    pub fn bytes(&self) -> u64 {
        locked(&self.tail).bytes
    }

    /// Serves one batch of replays, each asking for the log after its offset: one read of
    /// what the tail lacks, then one answer each.
    async fn serve(&self, afters: Vec<Offset>) -> Vec<Result<Arc<Snapshot>, Refusal>> {
        let Some(first) = afters.iter().min().copied() else {
            return Vec::new();
        };
        let now = match self.fill(first).await {
            Ok(now) => now,
            Err(refusal) => return vec![Err(refusal); afters.len()],
        };
        afters
            .iter()
            .map(|&after| match now.from {
                Some(from) if after >= from => Ok(now.clone()),
                // The budget dropped part of what this replay needs.
                _ => Err(Refusal::TooFarBehind),
            })
            .collect()
    }

    /// Reads into the tail what a replay from `first` needs and returns the tail after it. A
    /// tail whose end is too far behind to read within the budget is dropped and read again
    /// from `first`.
    async fn fill(&self, first: Offset) -> Result<Arc<Snapshot>, Refusal> {
        match self.fill_once(first).await {
            Err(ReadError::OverBudget) => {
                *locked(&self.tail) = Tail::default();
                self.fill_once(first).await
            }
            other => other,
        }
        .map_err(|e| match e {
            ReadError::Backend(e) => {
                tracing::warn!(error = %e, "recovery log read failed");
                Refusal::Unavailable
            }
            ReadError::OverBudget => Refusal::TooFarBehind,
        })
    }

    async fn fill_once(&self, first: Offset) -> Result<Arc<Snapshot>, ReadError> {
        let max = self.max_bytes();
        // What the tail lacks: the gap before it (if `first` is older) and what came after it.
        let (from, end, room) = {
            let mut tail = locked(&self.tail);
            tail.trim(max, now_ms().saturating_sub(self.window_ms));
            (tail.now.from, tail.end(), max.saturating_sub(tail.bytes))
        };
        let gap = match from {
            Some(from) if first < from => Some(Range::new(first, Some(from), room)),
            _ => None,
        };
        let mut ranges: Vec<Range> = gap.into_iter().collect();
        ranges.push(Range::new(end.unwrap_or(first), None, max));
        let (gap_failed, cut) = self.read(&mut ranges).await?;
        // The cut, read after the entries: a trim any node made before the read is known to
        // every replay this read serves.
        self.note_cut(cut);
        let fresh = ranges.pop().map(|r| r.out).unwrap_or_default();
        // `Some` (maybe empty) when the gap was read whole.
        let gap = ranges.pop().filter(|_| !gap_failed).map(|r| r.out);

        let mut tail = locked(&self.tail);
        // Only this reader adds entries; the timer's trim may have dropped some from the front
        // meanwhile, which leaves the end where it was.
        if tail.end() != end {
            *tail = Tail::default();
            return Err(ReadError::Backend(BackendError(
                "the tail changed during its read".into(),
            )));
        }
        let (start, before) = match gap {
            // The gap joins only the tail it was read against (a trim may have moved its start).
            Some(gap) if tail.now.from == from => (Some(first), gap),
            _ => (tail.now.from.or(Some(first)), Vec::new()),
        };
        let bytes = tail.bytes
            + before.iter().map(|e| e.bytes()).sum::<u64>()
            + fresh.iter().map(|e| e.bytes()).sum::<u64>();
        let mut entries = before;
        entries.reserve(tail.now.entries.len() + fresh.len());
        entries.extend(tail.now.entries.iter().cloned());
        entries.extend(fresh);
        tail.now = Arc::new(Snapshot {
            from: start,
            entries,
        });
        tail.bytes = bytes;
        tail.trim(max, 0);
        Ok(tail.now.clone())
    }

    /// Reads every range page by page, all of a round's pages and then the cut in one backend
    /// call. Returns whether the first of two ranges (the gap) went over its budget, and the
    /// cut read after the last page; the last range (the end) over its budget fails the read.
    async fn read(&self, ranges: &mut [Range]) -> Result<(bool, Option<Offset>), ReadError> {
        let mut gap_failed = false;
        loop {
            let wanted: Vec<(Offset, Option<Offset>)> = ranges
                .iter()
                .filter(|r| !r.done)
                .map(|r| (r.after, r.until))
                .collect();
            let (pages, cut) = self
                .backend
                .read_ranges(&wanted, PAGE)
                .await
                .map_err(ReadError::Backend)?;
            if pages.len() != wanted.len() {
                let answer = format!("{} pages for {} ranges", pages.len(), wanted.len());
                return Err(ReadError::Backend(BackendError(answer)));
            }
            let last = ranges.len() - 1;
            let pending = ranges.iter_mut().enumerate().filter(|(_, r)| !r.done);
            for ((i, range), page) in pending.zip(pages) {
                if let Err(e) = range.take(page) {
                    if i == last {
                        return Err(e);
                    }
                    gap_failed = true;
                    range.done = true;
                }
            }
            if ranges.iter().all(|r| r.done) {
                return Ok((gap_failed, cut));
            }
        }
    }
}

/// The batched reader of the tail (see the module doc).
pub struct TailReader {
    pub state: Arc<TailState>,
    batch: Batcher<Offset, Result<Arc<Snapshot>, Refusal>>,
}

impl TailReader {
    /// Must be called inside a tokio runtime (it starts the batch's task).
    pub fn new(backend: Arc<dyn RecoveryBackend>, window_ms: u64, max_bytes: u64) -> TailReader {
        let state = Arc::new(TailState {
            backend,
            window_ms,
            max_bytes: AtomicU64::new(max_bytes),
            tail: Mutex::default(),
            cut: Mutex::default(),
        });
        let served = state.clone();
        let batch = Batcher::new(READ_BATCH, move |afters| {
            let state = served.clone();
            async move { state.serve(afters).await }
        });
        TailReader { state, batch }
    }

    /// The log after `after`, complete as of this call: a snapshot starting at or before it.
    pub async fn read(&self, after: Offset) -> Result<Arc<Snapshot>, Refusal> {
        self.batch
            .call(after)
            .await
            .unwrap_or(Err(Refusal::Unavailable))
    }
}
