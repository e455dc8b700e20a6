//! Ordering: one socket's events are handled one at a time, in arrival order, and their saves
//! and emissions keep that order while the next event already starts.
//!
//! Below `service` and `realtime`: the dispatcher (`realtime/dispatch.rs`) runs each event in
//! its turns ([`Turns`], [`EmitOrder::run`]) and hands the event's [`Turn`] to its handler,
//! which passes it to the use case: the use case marks where its save begins ([`Turn::save`])
//! and gives the turn to its emission. REST and timers pass [`Turn::unordered`]. Nothing travels
//! invisibly (no task-local). Depends on nothing else in the crate.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

/// Hands out turns so that one socket's events are handled one at a time, in the order they
/// arrived. socketioxide runs every event handler as its own task; without turns, two
/// `message:send` from one socket could be saved, and reach other clients, in either order
/// (PROTOCOL.md: messages from one sender arrive in the order they were sent), and a
/// `user:typing:stop` could overtake its `start`.
#[derive(Default)]
pub struct Turns {
    /// Resolves (its sender is dropped) when the newest event so far has been handled.
    last: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Turns {
    /// Takes the next turn. Call it synchronously when the event arrives; await the future
    /// before handling the event, and drop the sender once it is handled.
    pub fn take(&self) -> (impl Future<Output = ()> + Send + use<>, oneshot::Sender<()>) {
        let (previous, done) = self.take_raw();
        (after(previous), done)
    }

    /// [`take`](Self::take), the previous turn's end as a receiver (`None`: no previous turn).
    fn take_raw(&self) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, next) = oneshot::channel();
        let previous = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(next);
        (previous, done)
    }
}

/// A socket event's place in its socket's order, handed explicitly to the use case that
/// handles it; or no place at all ([`Turn::unordered`]: REST requests, timers).
///
/// A use case waits for its save turn with [`Turn::save`] and hands the turn to its one
/// emission (`Emitter::emit` takes it by value), which waits for the emission and broadcast
/// turns and passes the emission turn on once its log append is queued. Taken by value, a
/// turn serves one emission: no use case chooses by hand whether its emission is the event's
/// last (one that ever needs two emissions in one event emits them as one batch).
pub struct Turn(Option<Arc<EmitOrder>>);

impl Turn {
    /// No order to keep: a REST request, a timer, a handshake.
    pub const fn unordered() -> Self {
        Turn(None)
    }

    /// Called before a socket event's save that must follow the socket's previous events (a
    /// message's `seq`): lets the socket's next event start and waits for the previous event's
    /// save (once per event). Unordered, it returns at once.
    pub async fn save(&self) {
        if let Some(order) = &self.0 {
            order.wait_for_save_turn().await;
        }
    }

    /// Called before the event's emission: lets the socket's next event start and save, and
    /// waits until the previous event's last log append is queued (once per event).
    pub async fn emission(&self) {
        if let Some(order) = &self.0 {
            order.wait_for_emit_turn().await;
        }
    }

    /// Called once the emission's log append is queued: lets the socket's next event queue its
    /// own. Only in the emission turn (after [`Turn::emission`]).
    pub fn pass_emission(&self) {
        if let Some(order) = &self.0 {
            order.pass_emit_turn();
        }
    }

    /// Called before the broadcast: waits for the previous event's broadcasts (once per event).
    pub async fn broadcast(&self) {
        if let Some(order) = &self.0 {
            order.wait_for_broadcast_turn().await;
        }
    }
}

/// Lets a socket's next event start once this one is about to save (its checks are done), while
/// its save still comes after the previous event's, and its emissions after the previous
/// event's and before the next one's.
///
/// One sender's events are handled one at a time ([`Turns`]); waiting for each event's save and
/// emission too capped a single sender at one chat read, one save and one publish per message
/// in turn (in cluster mode about 3.3 ms, so ~300 messages/s). With this, event N+1 is parsed
/// and authorized (its chat read) while event N is saved, and saved while event N's emission is
/// on its way. Order still holds: events take their save and emission turns in arrival order,
/// while they hold their event turn, and an event that saves or emits nothing passes its turn
/// on only after the previous event's.
///
/// An emission is two ordered steps, each with its own turn ([`StageTurns`]): its append to the
/// recovery log (which gives it its offset) and its broadcast. An event passes its emission
/// turn on once its emission's append is queued ([`Turn::pass_emission`]), so event N+1's
/// append is on its way to the log while event N's is (one sender's messages no longer wait
/// for one log round trip each), and takes the broadcast turn after event N's broadcasts
/// ([`Turn::broadcast`]): appends are queued in arrival order, so offsets grow in the
/// order the broadcasts go out.
pub struct EmitOrder {
    /// Dropped to let the socket's next event start.
    event_done: Slot<oneshot::Sender<()>>,
    /// Resolves when the previous event's save is done; taken by the first wait.
    previous_saves: Slot<oneshot::Receiver<()>>,
    /// Dropped once this event's save is done (when it first emits, or is handled).
    saves_done: Slot<oneshot::Sender<()>>,
    /// Resolves when the previous event's last log append is queued; taken by the first wait.
    previous_emits: Slot<oneshot::Receiver<()>>,
    /// Dropped once this event's last log append is queued (or it is handled).
    emits_done: Slot<oneshot::Sender<()>>,
    /// Resolves when the previous event's broadcasts are out; taken by the first wait.
    previous_broadcasts: Slot<oneshot::Receiver<()>>,
}

/// One socket's save, emission and broadcast turns (see [`EmitOrder`]).
#[derive(Default)]
pub struct StageTurns {
    pub saves: Turns,
    pub emits: Turns,
    pub broadcasts: Turns,
}

type Slot<T> = std::sync::Mutex<Option<T>>;

fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Waits for a previous stage, if there is one still to wait for.
async fn after(previous: Option<oneshot::Receiver<()>>) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
}

impl EmitOrder {
    /// Runs `handle` (one event's handling, reply included) with its [`Turn`], in its save,
    /// emission and broadcast turns.
    pub async fn run<F: Future<Output = ()>>(
        turns: &StageTurns,
        event_done: oneshot::Sender<()>,
        handle: impl FnOnce(Turn) -> F,
    ) {
        // Taken while this event holds its event turn: these turns follow arrival order.
        let (previous_saves, saves_done) = turns.saves.take_raw();
        let (previous_emits, emits_done) = turns.emits.take_raw();
        let (previous_broadcasts, broadcasts_done) = turns.broadcasts.take_raw();
        let order = Arc::new(EmitOrder {
            event_done: Slot::new(Some(event_done)),
            previous_saves: Slot::new(previous_saves),
            saves_done: Slot::new(Some(saves_done)),
            previous_emits: Slot::new(previous_emits),
            emits_done: Slot::new(Some(emits_done)),
            previous_broadcasts: Slot::new(previous_broadcasts),
        });
        handle(Turn(Some(order.clone()))).await;
        // Nothing saved, emitted or broadcast (or done): the next event may go, and these turns
        // are passed on once the previous event's are done.
        order.wait_for_emit_turn().await;
        order.pass_emit_turn();
        order.wait_for_broadcast_turn().await;
        drop(broadcasts_done);
    }

    async fn wait_for_save_turn(&self) {
        drop(take(&self.event_done));
        after(take(&self.previous_saves)).await;
    }

    async fn wait_for_emit_turn(&self) {
        // An event that saved nothing passes its save turn on only after the previous event's.
        self.wait_for_save_turn().await;
        drop(take(&self.saves_done));
        after(take(&self.previous_emits)).await;
    }

    fn pass_emit_turn(&self) {
        drop(take(&self.emits_done));
    }

    async fn wait_for_broadcast_turn(&self) {
        after(take(&self.previous_broadcasts)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use super::*;

    #[tokio::test]
    async fn turns_are_served_in_the_order_they_were_taken() {
        let turns = Turns::default();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20usize {
            let (my_turn, done) = turns.take();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                my_turn.await;
                // Later events do less work: without turns they would finish first.
                for _ in 0..(20 - i) {
                    tokio::task::yield_now().await;
                }
                order.lock().unwrap().push(i);
                drop(done);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    /// One socket's turns, and events run in them as the dispatcher runs them.
    #[derive(Default)]
    struct TestSocket {
        turns: Turns,
        stages: Arc<StageTurns>,
        log: Arc<std::sync::Mutex<Vec<String>>>,
    }

    type Handling = Pin<Box<dyn Future<Output = ()> + Send>>;

    impl TestSocket {
        /// Takes the next event turn now and runs `handle` in it.
        fn event(
            &self,
            handle: impl FnOnce(Log, Turn) -> Handling + Send + 'static,
        ) -> tokio::task::JoinHandle<()> {
            let (my_turn, done) = self.turns.take();
            let stages = self.stages.clone();
            let log = Log(self.log.clone());
            tokio::spawn(async move {
                my_turn.await;
                EmitOrder::run(&stages, done, |turn| handle(log, turn)).await;
            })
        }

        /// Waits for every event; `what` says what a hang means.
        async fn all_done(
            &self,
            events: Vec<tokio::task::JoinHandle<()>>,
            what: &str,
        ) -> Vec<String> {
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                for e in events {
                    e.await.unwrap();
                }
            })
            .await
            .expect(what);
            self.log.lock().unwrap().clone()
        }
    }

    #[derive(Clone)]
    struct Log(Arc<std::sync::Mutex<Vec<String>>>);

    impl Log {
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn lines(log: &[String], kind: &str) -> Vec<String> {
        log.iter()
            .filter(|l| l.starts_with(kind))
            .cloned()
            .collect()
    }

    /// Two events of one socket, as the dispatcher runs them: the second is saved while the
    /// first one's emission is still on its way, and the emissions keep their order.
    #[tokio::test]
    async fn the_next_event_is_saved_while_this_one_emits_and_emissions_keep_their_order() {
        let socket = TestSocket::default();
        let publish_a = Arc::new(tokio::sync::Notify::new());
        let event = |name: &'static str,
                     slow: Option<Arc<tokio::sync::Notify>>,
                     wake: Option<Arc<tokio::sync::Notify>>| {
            socket.event(move |log, turn| {
                Box::pin(async move {
                    log.push(format!("save {name}"));
                    if let Some(wake) = wake {
                        wake.notify_one();
                    }
                    turn.emission().await;
                    if let Some(slow) = slow {
                        slow.notified().await;
                    }
                    log.push(format!("emit {name}"));
                })
            })
        };
        let a = event("a", Some(publish_a.clone()), None);
        // b's save lets a's publish finish: without pipelining b would wait for a forever.
        let b = event("b", None, Some(publish_a));
        let c = event("c", None, None);
        let log = socket
            .all_done(
                vec![a, b, c],
                "the second event must start while the first one emits",
            )
            .await;
        assert_eq!(&log[..2], ["save a", "save b"]);
        assert_eq!(lines(&log, "emit"), ["emit a", "emit b", "emit c"]);
    }

    /// An event that emits nothing passes the emission turn on only after the previous event's
    /// emissions, so a later event's emission cannot overtake them.
    #[tokio::test]
    async fn an_event_without_emissions_does_not_let_a_later_emission_overtake() {
        let socket = TestSocket::default();
        let publish_a = Arc::new(tokio::sync::Notify::new());
        let slow = publish_a.clone();
        let a = socket.event(|log, turn| {
            Box::pin(async move {
                turn.emission().await;
                slow.notified().await;
                log.push("emit a".into());
            })
        });
        let b = socket.event(|_, _| Box::pin(async {})); // a read: no emission
        let c = socket.event(|log, turn| {
            Box::pin(async move {
                // Let a finish only once c is ready to emit.
                publish_a.notify_one();
                turn.emission().await;
                log.push("emit c".into());
            })
        });
        let log = socket.all_done(vec![a, b, c], "every event ends").await;
        assert_eq!(log, ["emit a", "emit c"]);
    }

    /// Two sends of one socket: the second reads its chat while the first one saves, and saves
    /// only after it.
    #[tokio::test]
    async fn the_next_event_reads_while_this_one_saves_and_saves_keep_their_order() {
        let socket = TestSocket::default();
        let save_a = Arc::new(tokio::sync::Notify::new());
        let event = |name: &'static str,
                     slow: Option<Arc<tokio::sync::Notify>>,
                     wake: Option<Arc<tokio::sync::Notify>>| {
            socket.event(move |log, turn| {
                Box::pin(async move {
                    log.push(format!("read {name}"));
                    if let Some(wake) = wake {
                        wake.notify_one();
                    }
                    turn.save().await;
                    if let Some(slow) = slow {
                        slow.notified().await;
                    }
                    log.push(format!("save {name}"));
                    turn.emission().await;
                    log.push(format!("emit {name}"));
                })
            })
        };
        let a = event("a", Some(save_a.clone()), None);
        // b's read lets a's save finish: without the save turn b would wait for a forever.
        let b = event("b", None, Some(save_a));
        let c = event("c", None, None);
        let log = socket
            .all_done(
                vec![a, b, c],
                "the second event must start while the first one saves",
            )
            .await;
        assert_eq!(&log[..2], ["read a", "read b"]);
        assert_eq!(lines(&log, "save"), ["save a", "save b", "save c"]);
        assert_eq!(lines(&log, "emit"), ["emit a", "emit b", "emit c"]);
    }

    /// Two emitting events of one socket: the second queues its log append while the first
    /// one's append is still on its way, and the broadcasts keep arrival order (the second
    /// event's append is quick, the first one's slow).
    #[tokio::test]
    async fn the_next_event_logs_while_this_ones_append_is_on_its_way_and_broadcasts_keep_order() {
        let socket = TestSocket::default();
        let append_a = Arc::new(tokio::sync::Notify::new());
        let event = |name: &'static str,
                     slow: Option<Arc<tokio::sync::Notify>>,
                     wake: Option<Arc<tokio::sync::Notify>>| {
            socket.event(move |log, turn| {
                Box::pin(async move {
                    turn.emission().await;
                    log.push(format!("append {name}"));
                    if let Some(wake) = wake {
                        wake.notify_one();
                    }
                    turn.pass_emission();
                    if let Some(slow) = slow {
                        slow.notified().await;
                    }
                    turn.broadcast().await;
                    log.push(format!("broadcast {name}"));
                })
            })
        };
        let a = event("a", Some(append_a.clone()), None);
        // b's append lets a's append answer: without passing the emission turn on, b would
        // wait for a forever.
        let b = event("b", None, Some(append_a));
        let c = event("c", None, None);
        let log = socket
            .all_done(
                vec![a, b, c],
                "the second event must append while the first one's append is on its way",
            )
            .await;
        assert_eq!(lines(&log, "append"), ["append a", "append b", "append c"]);
        assert_eq!(
            lines(&log, "broadcast"),
            ["broadcast a", "broadcast b", "broadcast c"]
        );
        let (a_out, b_in) = (
            log.iter().position(|l| l == "broadcast a").unwrap(),
            log.iter().position(|l| l == "append b").unwrap(),
        );
        assert!(b_in < a_out, "b appended only after a broadcast: {log:?}");
    }

    #[tokio::test]
    async fn an_event_that_never_ran_does_not_block_the_next() {
        let turns = Turns::default();
        let (first, first_done) = turns.take();
        let (second, _second_done) = turns.take();
        drop(first);
        drop(first_done);
        second.await;
    }
}
