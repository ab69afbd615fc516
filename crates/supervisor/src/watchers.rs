//! The per-prediction watchers: `predict_timeout`'s deadline and the cancel grace. Each is a task on
//! the supervisor's tracker that waits on its prediction's token (`scope.rs`) as well as its timer, so
//! it ends the moment the prediction does and never keeps an old generation (and its sockets) alive
//! until its timer fires.

use std::sync::Arc;

use cogvisor_protocol::SlotId;
use tokio_util::sync::CancellationToken;

use crate::scope::outlasts;
use crate::supervisor::is_current;
use crate::worker::Generation;
use crate::{PredictionEvent, Supervisor};

impl Supervisor {
    /// A cancelled prediction that still runs after `cancel_grace` is stuck (in C code, say): its slot
    /// is poisoned, which fails the prediction and frees the client. `ended` is the prediction's token.
    pub(crate) fn watch_cancel(
        &self,
        generation: Arc<Generation>,
        slot: SlotId,
        id: String,
        ended: CancellationToken,
    ) {
        let this = self.clone();
        let grace = self.inner.config.cancel_grace;
        self.inner.scope.spawn(async move {
            if !outlasts(&ended, grace).await {
                return;
            }
            let stuck = {
                let state = this.inner.lock();
                is_current(&state, &generation) && state.pool.find(&id) == Some(slot)
            };
            if stuck {
                // The client asked for a cancel and gets one; the slot, whose thread may still be
                // stuck in the model's code, takes no more work.
                let ending = if this.inner.lock().timed_out.remove(&id) {
                    PredictionEvent::Failed {
                        error:
                            "prediction timed out (predict_timeout) and did not stop when cancelled"
                                .into(),
                    }
                } else {
                    PredictionEvent::Canceled
                };
                this.poison_slot_ending(
                    &generation,
                    slot,
                    &format!(
                        "prediction {id} did not stop within {:.1}s of being cancelled",
                        grace.as_secs_f64()
                    ),
                    ending,
                );
            }
        });
    }

    /// Cancels prediction `id` when it runs past `predict_timeout`; it then ends `failed` with an error
    /// naming the timeout. `ended` is the prediction's token.
    pub(crate) fn watch_deadline(
        &self,
        generation: Arc<Generation>,
        slot: SlotId,
        id: String,
        ended: CancellationToken,
    ) {
        let Some(timeout) = self.inner.config.predict_timeout else {
            return;
        };
        let this = self.clone();
        self.inner.scope.spawn(async move {
            if !outlasts(&ended, timeout).await {
                return;
            }
            let overdue = {
                let mut state = this.inner.lock();
                let overdue = is_current(&state, &generation) && state.pool.find(&id) == Some(slot);
                if overdue {
                    state.timed_out.insert(id.clone());
                }
                overdue
            };
            if overdue {
                tracing::warn!(prediction_id = %id, ?timeout, "prediction timed out; cancelling it");
                this.cancel(&id).await;
            }
        });
    }
}
