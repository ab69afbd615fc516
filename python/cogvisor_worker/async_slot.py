"""The slot of an async model: an asyncio protocol on the worker's event loop.

Frames are read in ``data_received`` and a ``predict`` starts a task at once; outputs, logs, metrics and
the terminal message are written to the socket from the loop itself (``transport.write`` sends at once
when the socket buffer has room). Nothing on the hot path crosses a thread, so a prediction that sleeps
50 ms takes 50 ms plus the cost of its frames, even with every slot busy.

Work that may block — reading a spilled input, downloading URL inputs, encoding outputs other than small
scalars (files, containers with files) — runs in the loop's default executor, so one slot never stalls
the others. Messages emitted from other threads (``asyncio.to_thread`` code printing) are handed to the
loop with ``call_soon_threadsafe``; the terminal message is written one loop turn later, after anything
such a thread emitted before the prediction ended.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import struct
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Callable

from . import outputs, protocol
from .slots import Outcome, Prediction, Slot, SlotBroken

if TYPE_CHECKING:
    from .worker import Worker

# Outputs encoded on the loop; anything else (files, containers that may hold files) goes to a thread.
INLINE_OUTPUT_TYPES = (str, int, float, bool, type(None))
INLINE_OUTPUT_MAX_CHARS = 64 * 1024


class AsyncSlot(Slot):
    def __init__(self, worker: "Worker", index: int, sock: socket.socket) -> None:
        super().__init__(worker, index, sock)
        self.loop = worker.loop
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._paused = False
        # Frames kept back while a prediction's single output waits for its terminal message: written
        # together, the supervisor reads them at once (one wake-up instead of two or three).
        self._held: list[bytes] | None = None
        self._drained: asyncio.Future[None] | None = None
        model = worker.model
        assert model is not None
        # Inputs whose preparation may download or open files: their predictions prepare off the loop.
        self._file_inputs = {name for name, c in model.coercions.items() if c.kind in ("path", "file")}

    def start(self) -> None:
        """Attach the socket to the event loop (blocks until attached)."""

        async def attach() -> None:
            await self.loop.create_unix_connection(lambda: _Connection(self), sock=self.sock)

        asyncio.run_coroutine_threadsafe(attach(), self.loop).result()

    def _on_loop(self) -> bool:
        return threading.get_ident() == self.worker.loop_thread_id

    def on_send_thread(self) -> bool:
        return self._on_loop()

    def defer(self, fn: Callable[[], None]) -> bool:
        if self._on_loop():
            self.loop.call_soon(fn)
        else:
            self.loop.call_soon_threadsafe(fn)
        return True

    # -- writing ----------------------------------------------------------------------------------
    def emit(self, msg: protocol.Message) -> None:
        """Send one message: written at once on the loop, handed to the loop from any other thread."""
        if self.poisoned is not None:
            raise SlotBroken(self.poisoned)
        frame = protocol.encode_frame(msg)
        if self._on_loop():
            self._write(frame)
            return
        try:
            self.loop.call_soon_threadsafe(self._write, frame)
        except RuntimeError as e:  # the loop is closed: the worker is exiting
            raise SlotBroken(str(e)) from e

    def _write(self, frame: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.poisoned is not None:
            return
        if self._held is not None:
            self._held.append(frame)
        else:
            transport.write(frame)

    async def _wait_drained(self) -> None:
        """Wait while the transport's buffer is above its high-water mark (the supervisor reads slowly)."""
        while self._paused and self.poisoned is None:
            if self._drained is None or self._drained.done():
                self._drained = self.loop.create_future()
            await self._drained

    def _close(self) -> None:
        def abort() -> None:
            if self.transport is not None:
                self.transport.abort()
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

        if self._on_loop():
            abort()
        else:
            try:
                self.loop.call_soon_threadsafe(abort)
            except RuntimeError:
                pass

    # -- reading (called by _Connection on the loop) -----------------------------------------------
    def received(self, data: bytes) -> None:
        buf = self._buf
        buf.extend(data)
        while self.poisoned is None and len(buf) >= protocol.HEADER_LEN:
            (length,) = struct.unpack_from(">I", buf)
            if length > protocol.MAX_FRAME_LEN:
                self.poison(
                    f"slot {self.index} channel error: frame of {length} bytes exceeds the limit of "
                    f"{protocol.MAX_FRAME_LEN} bytes"
                )
                return
            end = protocol.HEADER_LEN + length
            if len(buf) < end:
                return
            try:
                # Decoded straight from the buffer: no bytes copy of a payload that may be 8 MiB.
                with memoryview(buf) as view:
                    payload = view[protocol.HEADER_LEN : end]
                    try:
                        text = str(payload, "utf-8")
                    except UnicodeDecodeError as e:
                        raise protocol.ProtocolError(f"malformed frame of {length} bytes: {e}") from e
                    finally:
                        payload.release()
                del buf[:end]
                msg = protocol.decode_payload_text(text, length)
            except protocol.ProtocolError as e:
                self.poison(f"slot {self.index} channel error: {e}")
                return
            self._on_message(msg)

    def closed(self, exc: Exception | None) -> None:
        if self.poisoned is not None:
            return
        if exc is not None:
            strerror = getattr(exc, "strerror", None)
            self.poison(f"slot socket read failed: {strerror or exc}")
        elif self._buf:
            self.poison(
                f"slot {self.index} channel error: stream ended in the middle of a frame "
                f"({len(self._buf)} bytes of a frame received)"
            )
        else:
            self.poison("slot socket closed by the supervisor")

    def _on_message(self, msg: protocol.Message) -> None:
        running = self.current
        if running is not None:
            self.poison(
                f"slot {self.index} channel error: predict received while {running.id} is still running"
            )
            return
        pred = self.parse_predict(msg)
        if pred is None:
            return
        pred.task = self.loop.create_task(self._predict(pred, msg))

    # -- one prediction (a task on the loop) ------------------------------------------------------
    async def _predict(self, pred: Prediction, msg: protocol.Message) -> None:
        self.worker.router.current.set(pred)  # this task's context only
        try:
            try:
                if msg.get("input_file") is not None or not self._file_inputs.isdisjoint(msg.get("input") or ()):
                    kwargs = await self.loop.run_in_executor(None, self.kwargs, msg, pred)
                else:
                    kwargs = self.kwargs(msg, pred)
            except asyncio.CancelledError:
                self._finish(pred, ("cancelled",))
                return
            except Exception as e:
                self._finish(pred, self.input_failure(pred, e))
                return
            if pred.cancelled:
                self._finish(pred, ("cancelled",))
                return
            self._finish(pred, await self._run(pred, kwargs))
        except SlotBroken:
            with self.lock:
                pred.finished = True
                self.current = None
            pred.downloader.cleanup()
        except BaseException as e:  # a worker bug must not leave the slot silently stuck
            self.worker.diag(f"slot {self.index}: unexpected error: {e!r}")
            self.poison(f"slot {self.index} worker error: {type(e).__name__}: {e}")
            pred.downloader.cleanup()

    async def _run(self, pred: Prediction, kwargs: dict[str, Any]) -> Outcome:
        model = self.worker.model
        assert model is not None
        pred.interruptible = True
        try:
            result = model.method(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, AsyncIterator):
                async for item in result:
                    await self._send_output(pred, item)
                stream = True
            elif outputs.is_stream(result):
                for item in result:
                    await self._send_output(pred, item)
                stream = True
            else:
                await self._send_output(pred, result, hold=True)
                stream = False
            outcome: Outcome = ("done", stream)
        except SlotBroken:
            raise
        except BaseException as e:  # CancelledError included: the outcome says cancelled
            outcome = self.failure(pred, e)
        finally:
            pred.interruptible = False
        return ("cancelled",) if pred.cancelled else outcome

    async def _send_output(self, pred: Prediction, value: Any, hold: bool = False) -> None:
        """Encode and write one output; ``hold``: keep it back until the terminal message (a single output)."""
        if type(value) in INLINE_OUTPUT_TYPES and not (
            isinstance(value, str) and len(value) > INLINE_OUTPUT_MAX_CHARS
        ):
            msg = self.output_message(pred, value)
        else:
            msg = await self.loop.run_in_executor(None, self.output_message, pred, value)
        pred.flush_logs()  # on the loop: what it printed before goes out first
        if hold:
            self._held = []
        self.emit(msg)
        if self._paused:
            await self._wait_drained()

    def _finish(self, pred: Prediction, outcome: Outcome) -> None:
        terminal = self.end(pred, outcome)
        try:
            frame = protocol.encode_frame(terminal)
        except protocol.ProtocolError as e:
            self.poison(f"cannot send the terminal message of {pred.id}: {e}")
            return
        # One loop turn later: frames other threads handed over before the end are written first.
        self.loop.call_soon(self._write_terminal, frame)

    def _write_terminal(self, frame: bytes) -> None:
        held, self._held = self._held, None
        if self.poisoned is not None:
            return
        self._write(b"".join([*held, frame]) if held else frame)
        self.worker.control.try_send(protocol.idle(self.index))

    # -- cancel (control thread) ------------------------------------------------------------------
    def deliver_cancel(self, pred: Prediction) -> None:
        try:
            self.loop.call_soon_threadsafe(self._cancel_task, pred)
        except RuntimeError:  # the loop is closed: the worker is exiting
            pass

    def _cancel_task(self, pred: Prediction) -> None:
        # On the loop, so `interruptible` cannot change under us: only model code is ever cancelled.
        task = pred.task
        if pred.interruptible and task is not None and not task.done():
            task.cancel()


class _Connection(asyncio.Protocol):
    """Feeds the slot what its socket receives; tracks write flow control."""

    def __init__(self, slot: AsyncSlot) -> None:
        self.slot = slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.slot.transport = transport

    def data_received(self, data: bytes) -> None:
        self.slot.received(data)

    def eof_received(self) -> bool:
        self.slot.closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.closed(exc)
        drained = self.slot._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self.slot._paused = True

    def resume_writing(self) -> None:
        self.slot._paused = False
        drained = self.slot._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
