"""Slots: one socket and one reader thread per concurrency slot, each running one prediction at a time."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import inspect
import socket
import threading
import time
import traceback
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Callable

import cog
from cog._runtime import Scope

from . import inputs, outputs, protocol
from .channel import ChannelError, SocketChannel

if TYPE_CHECKING:
    from .worker import Worker


class SlotBroken(Exception):
    """The slot's socket can no longer be written; the prediction's results cannot be delivered."""


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    obj = ctypes.py_object(exc) if exc is not None else None  # None → NULL clears a pending exception
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), obj))


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
        self.interruptible = False
        self.thread_id: int | None = None
        self.task: asyncio.Task[Any] | None = None
        self.scope = Scope(self._send_metric, context)
        self.downloader = inputs.Downloader()

    # -- log target ---------------------------------------------------------------------------------
    def log(self, source: str, data: str) -> bool:
        if self.finished:
            return False
        try:
            self.emit(protocol.slot_log(source, data))
        except SlotBroken:
            pass
        return True

    def emit(self, msg: protocol.Message) -> None:
        """Send a message for this prediction: directly (sync) or through the slot's FIFO sender (async)."""
        if self.is_async and threading.current_thread() is not self.slot.sender_thread:
            self.slot.sender.submit(self.slot.send, msg)
        else:
            self.slot.send(msg)

    # -- scope ------------------------------------------------------------------------------------
    def _send_metric(self, name: str, value: Any, mode: str) -> None:
        """The sink of this prediction's MetricRecorder (values were checked there; None deletes)."""
        if self.finished:
            return
        self.emit(protocol.metric(name, outputs.to_json(value), mode))


class Slot:
    def __init__(self, worker: "Worker", index: int, sock: socket.socket) -> None:
        self.worker = worker
        self.index = index
        self.sock = sock
        self.channel = SocketChannel(sock, f"slot {index} socket")
        self.reader = protocol.FrameReader.for_socket(sock)
        self.lock = threading.Lock()
        self.current: Prediction | None = None
        self.poisoned: str | None = None
        self.sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"cogvisor-slot-{index}-send")
        self.sender_thread: threading.Thread | None = None
        self.sender.submit(self._record_sender_thread).result()
        self.thread = threading.Thread(target=self.run, name=f"cogvisor-slot-{index}", daemon=True)

    def _record_sender_thread(self) -> None:
        self.sender_thread = threading.current_thread()

    # -- channel ----------------------------------------------------------------------------------
    def send(self, msg: protocol.Message) -> None:
        if self.poisoned is not None:
            raise SlotBroken(self.poisoned)
        try:
            self.channel.send(msg)
        except ChannelError as e:
            self.poison(f"slot socket write failed: {e}")
            raise SlotBroken(str(e)) from e

    def poison(self, error: str) -> None:
        """Stop using this slot and tell the supervisor (once)."""
        with self.lock:
            if self.poisoned is not None:
                return
            self.poisoned = error
        self.worker.control.try_send(protocol.control_failed(self.index, error))
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

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
            if msg.get("type") != "predict":
                self.poison(f"slot {self.index} channel error: unexpected message type {msg.get('type')!r}")
                return
            pid, output_dir = msg.get("id"), msg.get("output_dir")
            context = msg.get("context") or {}
            if not isinstance(pid, str) or not isinstance(output_dir, str) or not isinstance(context, dict):
                self.poison(f"slot {self.index} channel error: malformed predict message")
                return
            try:
                self.predict(pid, msg, output_dir, context)
            except SlotBroken:
                return
            except BaseException as e:  # a stray cancel or worker bug must not kill the slot silently
                self.worker.diag(f"slot {self.index}: unexpected error: {e!r}")
                self.poison(f"slot {self.index} worker error: {type(e).__name__}: {e}")
                return

    # -- one prediction ---------------------------------------------------------------------------
    def predict(self, pid: str, msg: protocol.Message, output_dir: str, context: dict[str, str]) -> None:
        model = self.worker.model
        assert model is not None
        pred = Prediction(self, pid, output_dir, {str(k): str(v) for k, v in context.items()}, model.is_async)
        try:
            self._predict(pred, msg)
        finally:
            pred.downloader.cleanup()

    def _predict(self, pred: Prediction, msg: protocol.Message) -> None:
        model = self.worker.model
        assert model is not None
        with self.lock:
            self.current = pred  # a cancel during input downloads is remembered
        start = time.monotonic()
        try:
            kwargs = self._kwargs(msg, pred)
        except inputs.InputError as e:
            self._finish(pred, ("cancelled",) if pred.cancelled else ("failed", str(e), None), 0.0)
            return
        except Exception as e:
            outcome = ("cancelled",) if pred.cancelled else ("failed", f"{type(e).__name__}: {e}", None)
            self._finish(pred, outcome, 0.0)
            return
        if pred.cancelled:
            self._finish(pred, ("cancelled",), time.monotonic() - start)
            return
        try:
            if model.is_async:
                outcome = self._run_async(pred, kwargs)
            else:
                outcome = self._run_sync(pred, kwargs)
        except SlotBroken:
            with self.lock:
                pred.finished = True
                self.current = None
            if self.worker.router.current_sync is pred:
                self.worker.router.current_sync = None
            raise
        self._finish(pred, outcome, time.monotonic() - start)

    def _kwargs(self, msg: protocol.Message, pred: Prediction) -> dict[str, Any]:
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

    def _send_output(self, pred: Prediction, value: Any) -> None:
        msg = outputs.output_message(value, pred.output_dir, self.worker.runtime_dir)
        self.send(msg)

    # -- sync -------------------------------------------------------------------------------------
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

    def _run_sync(self, pred: Prediction, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        router = self.worker.router
        model = self.worker.model
        assert model is not None
        pred.thread_id = threading.get_ident()
        token = router.current.set(pred)
        router.current_sync = pred
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
                    self._send_output(pred, item)
            else:
                self._send_output(pred, result)
            outcome: tuple[Any, ...] = ("done", stream)
        except SlotBroken:
            raise
        except BaseException as e:
            outcome = self._failure(pred, e)
        finally:
            router.current.reset(token)
        return ("cancelled",) if pred.cancelled else outcome

    def _failure(self, pred: Prediction, e: BaseException) -> tuple[Any, ...]:
        if pred.cancelled:
            return ("cancelled",)
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        return ("failed", f"{type(e).__name__}: {e}", tb)

    # -- async ------------------------------------------------------------------------------------
    def _run_async(self, pred: Prediction, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        worker = self.worker
        model = worker.model
        assert model is not None

        async def send_async(value: Any) -> None:
            await asyncio.wrap_future(self.sender.submit(self._send_output, pred, value))

        async def run() -> bool:
            worker.router.current.set(pred)
            with self.lock:
                pred.task = asyncio.current_task()
                if pred.cancelled:
                    raise asyncio.CancelledError()
            result = model.method(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, AsyncIterator):
                async for item in result:
                    await send_async(item)
                return True
            if outputs.is_stream(result):
                for item in result:
                    await send_async(item)
                return True
            await send_async(result)
            return False

        future = asyncio.run_coroutine_threadsafe(run(), worker.loop)
        try:
            stream = future.result()
            outcome: tuple[Any, ...] = ("done", stream)
        except SlotBroken:
            raise
        except BaseException as e:
            outcome = self._failure(pred, e)
        return ("cancelled",) if pred.cancelled else outcome

    # -- cancel (control thread) ------------------------------------------------------------------
    def cancel(self, pid: str) -> bool:
        """Deliver a cancel into prediction ``pid`` if it runs here; True if delivered."""
        with self.lock:
            pred = self.current
            if pred is None or pred.id != pid or pred.finished or pred.cancelled:
                return False
            pred.cancelled = True
            if pred.is_async:
                task = pred.task
                if task is not None:
                    self.worker.loop.call_soon_threadsafe(task.cancel)
            elif pred.interruptible and pred.thread_id is not None:
                _set_async_exc(pred.thread_id, cog.CancelationException)
        return True

    # -- end of a prediction ----------------------------------------------------------------------
    def _finish(self, pred: Prediction, outcome: tuple[Any, ...], predict_time: float) -> None:
        worker = self.worker
        for writer in worker.writers:
            writer.flush_target(pred)
        if outcome[0] == "failed":
            tb = outcome[2] or outcome[1] + "\n"
            pred.log("stderr", tb)
        if not pred.is_async:
            for reader in worker.pipe_readers:
                reader.drain()
            worker.router.current_sync = None
        with self.lock:
            pred.finished = True
            self.current = None
        pred.downloader.cleanup()  # downloaded inputs are gone when the supervisor hears the end
        if outcome[0] == "done":
            terminal = protocol.done(pred.id, predict_time, bool(outcome[1]))
        elif outcome[0] == "cancelled":
            terminal = protocol.slot_cancelled(pred.id)
        else:
            terminal = protocol.slot_failed(pred.id, outcome[1])
        try:
            if pred.is_async:
                self.sender.submit(self.send, terminal).result()
            else:
                self.send(terminal)
        except SlotBroken:
            raise
        except protocol.ProtocolError as e:
            self.poison(f"cannot send the terminal message of {pred.id}: {e}")
            raise SlotBroken(str(e)) from e
        worker.control.try_send(protocol.idle(self.index))
