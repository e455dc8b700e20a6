//! A staff `PATCH` that may raise a staff member's load (an assignment, a reopened chat) in
//! `ASSIGNMENT=auto` holds the assignment gate for its write, as a pass does, so it never
//! lands between a pass's count of the loads and that pass's write: otherwise the pass, having
//! counted one chat too few, would put the agent over `MAX_OPEN_CHATS_PER_AGENT` on a store
//! that cannot count in its write (MongoDB). PROTOCOL.md: auto-assignment never puts anyone over
//! the capacity; a `PATCH` by staff may, on purpose (it is not refused, only ordered).
//!
//! On this node the `PATCH` also takes the node's pass lock (`NodeState::assigning`): the
//! gate's holder is a node, so this node's pass and its `PATCH`es must not overlap either.

use std::time::Duration;

use crate::domain::{ChatPatch, ChatStatus};
use crate::error::{AppError, ErrorCode};
use crate::presence::AssignmentGate;
use crate::state::NodeState;
#[cfg(any(test, feature = "test-support"))]
use crate::state::test_hooks::TestHooks;
use crate::store::Store;

/// How long a `PATCH` waits for a running pass to end (past a pass's lease, the gate is free).
const WAIT_AT_MOST: Duration = Duration::from_secs(15);

/// How often a waiting `PATCH` asks for the gate again.
const POLL: Duration = Duration::from_millis(10);

/// The gate as a `PATCH` takes it.
#[derive(Clone, Copy)]
pub struct PatchGate<'a> {
    gate: &'a dyn AssignmentGate,
    store: &'a dyn Store,
    auto: bool,
    running: &'a tokio::sync::Mutex<()>,
    assigner: &'a tokio::sync::Notify,
    #[cfg(any(test, feature = "test-support"))]
    test_hooks: &'a TestHooks,
}

/// The gate, held for one `PATCH` write (give it back with [`PatchGate::leave`]).
pub struct Held<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl<'a> PatchGate<'a> {
    pub fn of(node: &'a NodeState) -> Self {
        PatchGate {
            gate: &*node.assignment_gate,
            store: &*node.store,
            auto: node.config.assignment.is_auto(),
            running: &node.assigning,
            assigner: &node.assigner_wake,
            #[cfg(any(test, feature = "test-support"))]
            test_hooks: &node.test_hooks,
        }
    }

    /// Takes the gate for `patch` if it may raise someone's load in `auto` mode (`None`: not
    /// needed). Waits for a running pass to end, at most [`WAIT_AT_MOST`] (`UNAVAILABLE`
    /// after that, or when the gate cannot be asked).
    pub async fn enter(&self, patch: &ChatPatch) -> Result<Option<Held<'a>>, AppError> {
        let raises = patch.assigned_admin.is_some() || patch.status == Some(ChatStatus::Open);
        if !self.auto || !raises {
            return Ok(None);
        }
        let busy = || AppError::new(ErrorCode::Unavailable, "an assignment pass is running");
        let deadline = tokio::time::Instant::now() + WAIT_AT_MOST;
        let mut noted = false;
        loop {
            let local = tokio::time::timeout_at(deadline, self.running.lock())
                .await
                .map_err(|_| busy())?;
            let begun = self.gate.begin(false).await.map_err(|e| {
                tracing::warn!(error = %e, "assignment gate unavailable: PATCH refused");
                busy()
            })?;
            if let Some(fence) = begun {
                if fence.taken_over {
                    // A pass outlived its lease: its late writes are refused from here.
                    self.store.fence_queue(fence.token).await?;
                }
                return Ok(Some(Held(local)));
            }
            drop(local);
            if !std::mem::replace(&mut noted, true) {
                self.note_wait();
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Err(busy());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A `PATCH` found the gate held (counted for a test).
    fn note_wait(&self) {
        #[cfg(any(test, feature = "test-support"))]
        self.test_hooks.patch_waits_for_gate();
    }

    /// Gives the gate back after the write; a pass asked for meanwhile is run by this node's
    /// assigner.
    pub async fn leave(&self, held: Option<Held<'a>>) {
        let Some(held) = held else {
            return;
        };
        let again = match self.gate.end().await {
            Ok(again) => again,
            Err(e) => {
                // Its lease lapses by itself.
                tracing::warn!(error = %e, "could not give the assignment gate back");
                false
            }
        };
        if again && let Err(e) = self.gate.release().await {
            tracing::warn!(error = %e, "could not give the assignment gate back");
        }
        drop(held);
        if again {
            self.assigner.notify_one();
        }
    }
}
