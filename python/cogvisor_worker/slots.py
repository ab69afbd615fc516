"""Slots: one socket per concurrency slot, each running one prediction at a time.

What every slot shares lives here: the :class:`Prediction` (the log target and metric scope of one
prediction), poisoning, building the model's arguments and the terminal message. How a slot reads its
socket and runs the model depends on the model:

* :mod:`.sync_slot` — a sync ``predict``: a reader thread per slot runs the prediction on itself, so a
  cancel can be raised into that thread.
* :mod:`.async_slot` — an async ``predict``: every slot is an asyncio protocol on the worker's event loop;
  a prediction is a task, and its frames are written from the loop without a thread hand-off (each
  hand-off costs a wake-up, which is what kept concurrent 50 ms predictions 2–3 ms from ideal).
"""

from __future__ import annotations

import socket
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable

from cog._runtime import Scope

from . import inputs, outputs, protocol

if TYPE_CHECKING:
    from .worker import Worker


class SlotBroken(Exception):
    """The slot's socket can no longer be written; the prediction's results cannot be delivered."""


class Prediction:
    """One running prediction: the log target and metric scope of the code it runs."""

    def __init__(self, slot: "Slot", id: str, output_dir: str, context: dict[str, str], is_async: bool) -> None:
        self.slot = slot
        self.id = id
        self.output_dir = output_dir
        self.context = context
        self.is_async = is_async
        self.finished = False
        self.cancelled = False
        # True while model code runs (sync: a cancel may be raised into the thread; async: the task may be
        # cancelled). Our own sends and the terminal message are never interrupted.
        self.interruptible = False
        self.thread_id: int | None = None
        self.task: Any = None  # asyncio.Task of an async prediction
        self.start = time.monotonic()
        self.log_sent_at = 0.0  # when its log text was last sent (fdio.LogRouter batches what follows)
        self.scope = Scope(self._send_metric, context)
        worker = slot.worker
        self.downloader = inputs.Downloader(
            directory=inputs.inputs_dir(worker.runtime_dir) if worker.runtime_dir else None,
            prefix=f"{worker.generation}-",
        )

    # -- log target ---------------------------------------------------------------------------------
    def log(self, source: str, data: str) -> bool:
        if self.finished:
            return False
        try:
            self.slot.emit(protocol.slot_log(source, data))
        except SlotBroken:
            pass
        return True

    def on_send_thread(self) -> bool:
        return self.slot.on_send_thread()

    def defer(self, fn: Any) -> bool:
        return self.slot.defer(fn)

    def flush_logs(self) -> None:
        """Send the lines this prediction printed so far, ahead of its next message."""
        self.slot.worker.router.flush(self)

    # -- scope ------------------------------------------------------------------------------------
    def _send_metric(self, name: str, value: Any, mode: str) -> None:
        """The sink of this prediction's MetricRecorder (the value was checked and made JSON there; None
        deletes)."""
        if self.finished:
            return
        self.flush_logs()
        self.slot.emit(protocol.metric(name, value, mode))


Outcome = tuple[Any, ...]  # ("done", is_stream) | ("cancelled",) | ("failed", error, traceback | None)


class Slot:
    """What sync and async slots share. Subclasses provide ``emit`` (send one message from any thread),
    ``start`` and ``deliver_cancel``."""

    def __init__(self, worker: "Worker", index: int, sock: socket.socket) -> None:
        self.worker = worker
        self.index = index
        self.sock = sock
        self.lock = threading.Lock()
        self.current: Prediction | None = None
        self.poisoned: str | None = None
        # A cancel that arrived before its prediction: the control channel and this slot's socket are
        # separate streams, so the supervisor's cancel can overtake the predict message it follows. Only
        # the next prediction on this slot can be the one meant; it starts cancelled if its id matches.
        self.early_cancel: str | None = None

    def emit(self, msg: protocol.Message) -> None:
        raise NotImplementedError

    def on_send_thread(self) -> bool:
        """Whether the calling thread may write this slot's messages now (see fdio.LogRouter)."""
        return True

    def defer(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` on the thread that writes this slot's messages; False: this slot has none."""
        return False

    def start(self) -> None:
        raise NotImplementedError

    def cancel(self, pid: str) -> bool:
        """Cancel prediction ``pid`` if it runs here (control thread); True if the cancel was taken."""
        with self.lock:
            pred = self.current
            if pred is None or (pred.id != pid and pred.finished):
                self.early_cancel = pid
                return True
            if pred.id != pid or pred.finished or pred.cancelled:
                return False
            pred.cancelled = True
            self.deliver_cancel(pred)
        pred.downloader.abort("the prediction was cancelled")  # a download in progress stops at once
        return True

    def deliver_cancel(self, pred: Prediction) -> None:
        """Interrupt the model code of ``pred`` (called with ``self.lock`` held)."""
        raise NotImplementedError

    def poison(self, error: str) -> None:
        """Stop using this slot and tell the supervisor (once)."""
        with self.lock:
            if self.poisoned is not None:
                return
            self.poisoned = error
        self.worker.control.try_send(protocol.control_failed(self.index, error))
        self._close()

    def _close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- one prediction ---------------------------------------------------------------------------
    def parse_predict(self, msg: protocol.Message) -> Prediction | None:
        """The prediction a ``predict`` frame asks for; None (after poisoning the slot) if malformed."""
        if msg.get("type") != "predict":
            self.poison(f"slot {self.index} channel error: unexpected message type {msg.get('type')!r}")
            return None
        pid, output_dir = msg.get("id"), msg.get("output_dir")
        context = msg.get("context") or {}
        if not isinstance(pid, str) or not isinstance(output_dir, str) or not isinstance(context, dict):
            self.poison(f"slot {self.index} channel error: malformed predict message")
            return None
        model = self.worker.model
        assert model is not None
        pred = Prediction(self, pid, output_dir, {str(k): str(v) for k, v in context.items()}, model.is_async)
        with self.lock:
            self.current = pred  # a cancel during input downloads is remembered
            pred.cancelled = self.early_cancel == pid
            self.early_cancel = None
        if pred.cancelled:
            pred.downloader.abort("the prediction was cancelled")
        return pred

    def kwargs(self, msg: protocol.Message, pred: Prediction) -> dict[str, Any]:
        """The model's keyword arguments (reads a spilled input, downloads URL inputs: may block)."""
        model = self.worker.model
        assert model is not None
        if msg.get("input_file") is not None:
            value = protocol.take_spill(protocol.spill_dir(self.worker.runtime_dir), str(msg["input_file"]))
        else:
            value = msg.get("input")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TypeError(f"prediction input must be a JSON object, got {type(value).__name__}")
        missing = sorted(model.required_inputs - value.keys())
        if missing:
            raise ValueError(f"missing required input: {', '.join(missing)}")
        return inputs.prepare(value, model.coercions, pred.downloader)

    def input_failure(self, pred: Prediction, e: BaseException) -> Outcome:
        if pred.cancelled:
            return ("cancelled",)
        if isinstance(e, inputs.InputError):
            return ("failed", str(e), None)
        return ("failed", f"{type(e).__name__}: {e}", None)

    def failure(self, pred: Prediction, e: BaseException) -> Outcome:
        if pred.cancelled:
            return ("cancelled",)
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        return ("failed", f"{type(e).__name__}: {e}", tb)

    def output_message(self, pred: Prediction, value: Any) -> protocol.Message:
        return outputs.output_message(value, pred.output_dir, self.worker.runtime_dir)

    def end(self, pred: Prediction, outcome: Outcome) -> protocol.Message:
        """Flush the prediction's buffered logs, mark it finished and build its terminal message."""
        for writer in self.worker.writers:
            writer.flush_target(pred)
        if outcome[0] == "failed":
            pred.log("stderr", outcome[2] or outcome[1] + "\n")
        with self.lock:
            pred.finished = True
            self.current = None
        pred.downloader.cleanup()  # downloaded inputs are gone when the supervisor hears the end
        if outcome[0] == "done":
            return protocol.done(pred.id, time.monotonic() - pred.start, bool(outcome[1]))
        if outcome[0] == "cancelled":
            return protocol.slot_cancelled(pred.id)
        return protocol.slot_failed(pred.id, outcome[1])


def make_slots(worker: "Worker", socks: list[tuple[int, socket.socket]]) -> list[Slot]:
    """One slot per socket, of the kind the loaded model needs."""
    model = worker.model
    assert model is not None
    if model.is_async:
        from .async_slot import AsyncSlot

        return [AsyncSlot(worker, index, sock) for index, sock in socks]
    from .sync_slot import SyncSlot

    return [SyncSlot(worker, index, sock) for index, sock in socks]
