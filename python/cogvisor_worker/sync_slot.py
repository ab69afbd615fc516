"""The slot of a sync model: a reader thread that runs each prediction on itself.

Running the prediction on the thread that read it means no hand-off between threads on the hot path,
and a cancel can be raised into exactly that thread (``PyThreadState_SetAsyncExc``) while model code
runs — never while we send.
"""

from __future__ import annotations

import ctypes
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable

import cog

from . import outputs, protocol
from .channel import ChannelError, SocketChannel
from .slots import Outcome, Prediction, Slot, SlotBroken

if TYPE_CHECKING:
    from .worker import Worker


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    obj = ctypes.py_object(exc) if exc is not None else None  # None → NULL clears a pending exception
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), obj))


class SyncSlot(Slot):
    def __init__(self, worker: "Worker", index: int, sock: socket.socket) -> None:
        super().__init__(worker, index, sock)
        self.channel = SocketChannel(sock, f"slot {index} socket")
        self.reader = protocol.FrameReader.for_socket(sock)
        self.thread = threading.Thread(target=self.run, name=f"cogvisor-slot-{index}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # -- channel ----------------------------------------------------------------------------------
    def emit(self, msg: protocol.Message) -> None:
        """Send one message; any thread may call it (the channel serializes whole frames)."""
        if self.poisoned is not None:
            raise SlotBroken(self.poisoned)
        try:
            self.channel.send(msg)
        except ChannelError as e:
            self.poison(f"slot socket write failed: {e}")
            raise SlotBroken(str(e)) from e

    # -- reader loop ------------------------------------------------------------------------------
    def run(self) -> None:
        while self.poisoned is None:
            try:
                msg = self.reader.read_frame()
            except protocol.ProtocolError as e:
                self.poison(f"slot {self.index} channel error: {e}")
                return
            except OSError as e:
                self.poison(f"slot socket read failed: {e.strerror or e}")
                return
            if msg is None:
                self.poison("slot socket closed by the supervisor")
                return
            pred = self.parse_predict(msg)
            if pred is None:
                return
            try:
                self.predict(pred, msg)
            except SlotBroken:
                return
            except BaseException as e:  # a stray cancel or worker bug must not kill the slot silently
                self.worker.diag(f"slot {self.index}: unexpected error: {e!r}")
                self.poison(f"slot {self.index} worker error: {type(e).__name__}: {e}")
                return
            finally:
                pred.downloader.cleanup()

    # -- one prediction ---------------------------------------------------------------------------
    def predict(self, pred: Prediction, msg: protocol.Message) -> None:
        router = self.worker.router
        try:
            kwargs = self.kwargs(msg, pred)
        except Exception as e:
            self.finish(pred, self.input_failure(pred, e))
            return
        if pred.cancelled:
            self.finish(pred, ("cancelled",))
            return
        pred.thread_id = threading.get_ident()
        token = router.current.set(pred)
        router.current_sync = pred
        try:
            outcome = self._run(pred, kwargs)
        except SlotBroken:
            with self.lock:
                pred.finished = True
                self.current = None
            router.current_sync = None
            raise
        finally:
            router.current.reset(token)
        self.finish(pred, outcome)

    def _interruptible(self, pred: Prediction, fn: Callable[[], Any]) -> Any:
        """Run model code where a cancel may raise CancelationException; our own sends never are."""
        with self.lock:
            if pred.cancelled:
                raise cog.CancelationException()
            pred.interruptible = True
        try:
            return fn()
        finally:
            while True:
                try:
                    with self.lock:
                        pred.interruptible = False
                    _set_async_exc(threading.get_ident(), None)
                    break
                except cog.CancelationException:
                    continue

    def _run(self, pred: Prediction, kwargs: dict[str, Any]) -> Outcome:
        model = self.worker.model
        assert model is not None
        try:
            result = self._interruptible(pred, lambda: model.method(**kwargs))
            stream = outputs.is_stream(result)
            if stream:
                it = iter(result)
                while True:
                    try:
                        item = self._interruptible(pred, lambda: next(it))
                    except StopIteration:
                        break
                    msg = self.output_message(pred, item)
                    pred.flush_logs()
                    self.emit(msg)
            else:
                # One output: hold it, and send it with the last logs and the terminal in one write.
                msg = self.output_message(pred, result)
                self.channel.hold()
                pred.flush_logs()
                self.emit(msg)
            outcome: Outcome = ("done", stream)
        except SlotBroken:
            raise
        except BaseException as e:
            outcome = self.failure(pred, e)
        return ("cancelled",) if pred.cancelled else outcome

    def finish(self, pred: Prediction, outcome: Outcome) -> None:
        worker = self.worker
        terminal = self.end_sync(pred, outcome)
        try:
            try:
                self.emit(terminal)
            finally:
                self.release()
        except protocol.ProtocolError as e:
            self.poison(f"cannot send the terminal message of {pred.id}: {e}")
            raise SlotBroken(str(e)) from e
        worker.control.try_send(protocol.idle(self.index))

    def release(self) -> None:
        """Write the frames held since the output (see SocketChannel.hold)."""
        try:
            self.channel.release()
        except ChannelError as e:
            self.poison(f"slot socket write failed: {e}")
            raise SlotBroken(str(e)) from e

    def end_sync(self, pred: Prediction, outcome: Outcome) -> protocol.Message:
        # fd-level output of a sync prediction belongs to it: route what is already in the pipes first.
        for reader in self.worker.pipe_readers:
            reader.drain()
        self.worker.router.current_sync = None
        return self.end(pred, outcome)

    # -- cancel (control thread) ------------------------------------------------------------------
    def deliver_cancel(self, pred: Prediction) -> None:
        # Under the slot lock, so `interruptible` cannot change under us: only model code is interrupted.
        if pred.interruptible and pred.thread_id is not None:
            _set_async_exc(pred.thread_id, cog.CancelationException)
