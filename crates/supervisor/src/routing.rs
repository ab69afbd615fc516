//! What the worker sends, routed: slot messages to the prediction running there (and its terminal
//! message frees the slot first), control messages to logs, checks and the health machine, and a
//! broken channel to a poisoned slot.

use std::sync::Arc;

use cogvisor_protocol::{ControlResponse, FileOutputKind, SlotId, SlotResponse};
use futures::StreamExt;

use crate::health_machine::{Event, RecycleTrigger};
use crate::model_output;
use crate::supervisor::is_current;
use crate::worker::{ControlReader, Generation, SlotReader};
use crate::{PredictionEvent, Supervisor};

impl Supervisor {
    /// Poisons `slot` and fails the prediction it was running with `reason`.
    pub(crate) fn poison_slot(&self, generation: &Generation, slot: SlotId, reason: &str) {
        let failed = PredictionEvent::Failed {
            error: format!("prediction failed: {reason}"),
        };
        self.poison_slot_ending(generation, slot, reason, failed);
    }

    /// Poisons `slot`; the prediction it was running ends with `ending`.
    pub(crate) fn poison_slot_ending(
        &self,
        generation: &Generation,
        slot: SlotId,
        reason: &str,
        ending: PredictionEvent,
    ) {
        let running = {
            let mut state = self.inner.lock();
            if !is_current(&state, generation) {
                return;
            }
            let running = state.pool.poison(slot, reason);
            if state.pool.all_poisoned() {
                let last = reason.to_string();
                self.inner
                    .handle(&mut state, Event::AllSlotsPoisoned { last });
            }
            running
        };
        self.inner.slot_freed.notify_waiters();
        let prediction_id = running.as_ref().map_or("", |r| r.id.as_str());
        tracing::warn!(slot = slot.0, prediction_id, reason, "slot poisoned");
        if let Some(r) = running {
            let _ = r.events.send(ending);
        }
    }

    /// Routes what the worker sends on one slot socket to the prediction running there.
    pub(crate) async fn read_slot(
        &self,
        generation: Arc<Generation>,
        slot: SlotId,
        mut reader: SlotReader,
    ) {
        loop {
            let message = match reader.next().await {
                Some(Ok(m)) => m,
                other => {
                    let reason = match other {
                        Some(Err(e)) => format!("slot {slot} channel error: {e}"),
                        _ => format!("slot {slot} channel closed by the worker"),
                    };
                    // If the worker is dying, its exit (with code or signal) is the better report.
                    let mut exit = generation.exit.clone();
                    let dying = tokio::time::timeout(
                        std::time::Duration::from_millis(500),
                        exit.wait_for(Option::is_some),
                    )
                    .await;
                    if !matches!(dying, Ok(Ok(_))) {
                        self.poison_slot(&generation, slot, &reason);
                    }
                    return;
                }
            };
            self.on_slot_message(&generation, slot, message).await;
        }
    }

    async fn on_slot_message(&self, generation: &Generation, slot: SlotId, message: SlotResponse) {
        let event = match message {
            SlotResponse::Log { source, data } => PredictionEvent::Log {
                source,
                data: cogvisor_protocol::truncate_log(data),
            },
            SlotResponse::Output { output } => PredictionEvent::Output(output),
            SlotResponse::FileOutput {
                filename,
                kind: FileOutputKind::File,
                mime_type,
            } => PredictionEvent::File {
                path: filename.into(),
                mime_type,
            },
            SlotResponse::FileOutput {
                filename,
                kind: FileOutputKind::Oversized,
                ..
            } => match crate::payload::take_output(self.inner.runtime.spill_dir(), filename.into())
                .await
            {
                Ok(value) => PredictionEvent::Output(value),
                Err(e) => {
                    self.poison_slot(generation, slot, &format!("bad output spill file: {e}"));
                    return;
                }
            },
            SlotResponse::Metric { name, value, mode } => {
                PredictionEvent::Metric { name, value, mode }
            }
            SlotResponse::RecycleRequested {
                reason,
                rerun_setup,
            } => return self.model_recycle(generation, reason, rerun_setup),
            SlotResponse::Done {
                id,
                predict_time,
                is_stream,
            } => {
                return self.finish(
                    generation,
                    slot,
                    &id,
                    PredictionEvent::Succeeded {
                        predict_time,
                        is_stream,
                    },
                )
            }
            SlotResponse::Failed { id, error } => {
                return self.finish(generation, slot, &id, PredictionEvent::Failed { error })
            }
            SlotResponse::Cancelled { id } => {
                return self.finish(generation, slot, &id, PredictionEvent::Canceled)
            }
        };
        let target = {
            let state = self.inner.lock();
            match state.pool.running(slot) {
                Some(r) if is_current(&state, generation) => Some((r.id.clone(), r.events.clone())),
                _ => None,
            }
        };
        let Some((id, events)) = target else {
            tracing::debug!(
                slot = slot.0,
                "message for a slot with no running prediction"
            );
            return;
        };
        // The server's log gets what the model printed too, on the output log's own thread: a slow
        // stderr or a 1 MiB line must not hold up a runtime thread (crate::output_log). This slot's
        // messages are handled in order by this one task, so the line still reaches the prediction
        // before its terminal event.
        if let PredictionEvent::Log { source, data } = &event {
            crate::output_log::write(*source, data, &id).await;
        }
        let _ = events.send(event);
    }

    /// `cog.recycle_worker()` from model code. The health machine goes RECYCLING here, at once, so no
    /// prediction is admitted to this worker from now on (a client that gets the requesting
    /// prediction's response and sends its next request sees 503, then the new worker); the lifecycle
    /// task then carries out the recycle the machine decided.
    fn model_recycle(&self, generation: &Generation, reason: String, rerun_setup: bool) {
        tracing::info!(
            generation = generation.number,
            reason,
            rerun_setup,
            "model asked for a worker recycle"
        );
        let mut state = self.inner.lock();
        if is_current(&state, generation) {
            let event = Event::RecycleRequested {
                trigger: RecycleTrigger::Model,
                reason,
                rerun_setup,
            };
            self.inner.handle(&mut state, event);
        }
    }

    /// A terminal message: free the slot first, then tell the prediction, so its response can never
    /// reach the client before the slot is free again.
    ///
    /// With `recycle.max_rss` set, the worker's RSS is read first, and a worker past it goes
    /// RECYCLING in the same lock that frees the slot: no later prediction can land on it.
    fn finish(&self, generation: &Generation, slot: SlotId, id: &str, mut event: PredictionEvent) {
        let rss = self.rss_after_prediction(generation);
        let running = {
            let mut state = self.inner.lock();
            if !is_current(&state, generation) {
                return;
            }
            let running = state.pool.release(slot, id);
            if state.timed_out.remove(id) {
                if let (Some(timeout), PredictionEvent::Canceled) =
                    (self.inner.config.predict_timeout, &event)
                {
                    event = PredictionEvent::Failed {
                        error: format!(
                            "prediction timed out after {:.1}s (predict_timeout) and was cancelled",
                            timeout.as_secs_f64()
                        ),
                    };
                }
            }
            state.predictions_served += 1;
            let limit_reached = state
                .prediction_limit
                .filter(|limit| state.predictions_served == *limit);
            if let Some(limit) = limit_reached {
                let event = Event::RecycleRequested {
                    trigger: RecycleTrigger::MaxPredictions,
                    reason: format!("the worker has served {limit} predictions"),
                    rerun_setup: false,
                };
                self.inner.handle(&mut state, event);
            }
            let past_rss = rss.and_then(|(bytes, counted)| {
                let watch = state.memory.as_ref()?;
                let (trigger, reason) = (watch.generation == generation.number)
                    .then(|| watch.check_rss(bytes, counted))
                    .flatten()?;
                Some((trigger, reason, watch.past_ceiling(bytes)))
            });
            if let Some((trigger, reason, urgent)) = past_rss {
                self.raise_memory_recycle(&mut state, generation, trigger, reason, urgent);
            }
            running
        };
        self.inner.slot_freed.notify_waiters();
        match running {
            Some(r) => {
                let _ = r.events.send(event);
            }
            None => tracing::warn!(
                slot = slot.0,
                prediction_id = id,
                "terminal message for a prediction not running in that slot"
            ),
        }
    }

    /// Handles control messages after `ready`.
    pub(crate) async fn read_control(
        &self,
        generation: Arc<Generation>,
        mut reader: ControlReader,
    ) {
        while let Some(frame) = reader.next().await {
            let message = match frame {
                Ok(m) => m,
                Err(e) => {
                    // The control channel cannot be trusted any more: the worker must go.
                    tracing::error!(generation = generation.number, error = %e, "control channel error; stopping the worker");
                    crate::process_tree::kill_tree(generation.pid).await;
                    return;
                }
            };
            match message {
                ControlResponse::Log { source, data } => {
                    model_output::log_user_output(source, &data, None)
                }
                ControlResponse::WorkerLog { level, message } => {
                    model_output::log_worker_message(level, &message)
                }
                ControlResponse::Idle { slot } => tracing::debug!(slot = slot.0, "slot idle"),
                ControlResponse::Cancelled { slot, id } => {
                    tracing::info!(slot = slot.0, prediction_id = %id, "cancel delivered")
                }
                ControlResponse::Failed { slot, error } => {
                    self.poison_slot(&generation, slot, &error)
                }
                ControlResponse::Fatal { reason } => {
                    tracing::error!(
                        generation = generation.number,
                        reason,
                        "worker reported a fatal error; stopping it"
                    );
                    crate::process_tree::kill_tree(generation.pid).await;
                }
                ControlResponse::DroppedLogs {
                    count,
                    interval_millis,
                } => {
                    tracing::warn!(count, interval_millis, "worker dropped log messages")
                }
                ControlResponse::HealthcheckResult { id, status, error } => {
                    self.inner.checks.answer(&id, status, error)
                }
                ControlResponse::HeartbeatAck { seq } => {
                    generation.heartbeat_acks.send_replace(seq);
                }
                ControlResponse::ShuttingDown => {
                    tracing::info!(generation = generation.number, "worker shutting down")
                }
                ControlResponse::RecycleRequested {
                    reason,
                    rerun_setup,
                } => self.model_recycle(&generation, reason, rerun_setup),
                ControlResponse::Ready { .. } | ControlResponse::SetupFailed { .. } => {
                    tracing::warn!(
                        generation = generation.number,
                        "setup message after ready ignored"
                    )
                }
            }
        }
    }
}
