"""The worker process: startup, setup and the control loop."""

from __future__ import annotations

import asyncio
import inspect
import os
import platform
import socket
import sys
import threading
import traceback
from typing import Any, NoReturn

from . import event_loop, fdio, guard, healthcheck, loader, protocol
from .channel import FdChannel
from .schema import SchemaError

# Process exit codes.
EXIT_OK = 0  # shutdown, or the control channel closed
EXIT_SETUP_FAILED = 1  # setup_failed was sent (bad init version, slot connect, import, load, setup)
EXIT_PROTOCOL = 2  # the control channel broke (malformed/oversized frame, first frame not init): fatal


class Worker:
    def __init__(self) -> None:
        # Nothing from the model is imported before this runs.
        self.fds = fdio.redirect_fds()
        self.control = FdChannel(self.fds.control_out)
        self.router = fdio.LogRouter(self.control)
        self.pipe_readers = [
            fdio.PipeReader(self.fds.stdout_pipe, "stdout", self.router),
            fdio.PipeReader(self.fds.stderr_pipe, "stderr", self.router),
        ]
        for reader in self.pipe_readers:
            reader.start()
        self.writers = fdio.install_writers(self.router)
        self.loop = event_loop.new_event_loop()
        self._loop_thread = threading.Thread(target=self._run_loop, name="cogvisor-asyncio", daemon=True)
        self._loop_thread.start()
        self.loop_thread_id = self._loop_thread.ident
        self.control_reader = protocol.FrameReader.for_fd(self.fds.control_in)
        self.model: loader.Model | None = None
        self.runtime_dir = ""
        self.generation = 0
        self.slots: list[Any] = []
        self._install_sdk_runtime()

    # -- helpers ----------------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def diag(self, text: str) -> None:
        fdio.diag(self.fds.diagnostics, text)

    def _install_sdk_runtime(self) -> None:
        from cog import _runtime

        worker = self

        class _Runtime:
            def current_scope(self) -> Any:
                target = worker.router.python_target()
                if target is not None and not getattr(target, "finished", True):
                    return target.scope
                return _runtime.null_scope()

            def recycle_worker(self, reason: str, rerun_setup: bool) -> None:
                # From a prediction: on its slot, ahead of its terminal message, so the supervisor stops
                # admitting work here before that prediction's response goes out. Else: control channel.
                target = worker.router.python_target()
                if target is not None and not getattr(target, "finished", True):
                    try:
                        target.slot.emit(protocol.slot_recycle_requested(reason, rerun_setup))
                        return
                    except Exception:  # the slot broke: the control channel still reaches the supervisor
                        pass
                worker.router.flush(None)  # what was printed before goes first
                worker.control.send(protocol.recycle_requested(reason, rerun_setup))

        _runtime.install(_Runtime())

    def flush_logs(self, quiet: float = 0.0) -> None:
        """Send every log line the worker holds; ``quiet``: first wait (at most 0.5 s) until fd-level
        output has paused that long (see fdio.PipeReader.drain)."""
        for writer in self.writers:
            writer.flush_target(None)
        for reader in self.pipe_readers:
            reader.drain(0.5, quiet)
        self.router.flush_all()

    def exit(self, code: int) -> NoReturn:
        try:
            self.flush_logs()
        except Exception:
            pass
        os._exit(code)

    def fatal(self, reason: str) -> NoReturn:
        self.diag(reason)
        self._flush_logs_quietly()  # what was printed before comes first
        self.control.try_send(protocol.fatal(reason))
        self.exit(EXIT_PROTOCOL)

    def milestone(self, text: str) -> None:
        """A start-up milestone: an info ``worker_log`` (setup.logs carries it), after the lines printed
        before it (they are batched: see fdio.LogRouter)."""
        self.router.flush(None)
        self.control.try_send(protocol.worker_log("info", text))

    def _flush_logs_quietly(self) -> None:
        try:
            self.flush_logs()
        except Exception:
            pass

    def setup_failed(self, error: str) -> NoReturn:
        self._flush_logs_quietly()  # setup's output reaches setup.logs before the failure ends it
        self.control.try_send(protocol.setup_failed(error))
        self.exit(EXIT_SETUP_FAILED)

    def run_blocking(self, result: Any) -> Any:
        """Await ``result`` on the worker's event loop if it is awaitable (async setup)."""
        if inspect.isawaitable(result):

            async def wait() -> Any:
                return await result

            return asyncio.run_coroutine_threadsafe(wait(), self.loop).result()
        return result

    # -- startup ----------------------------------------------------------------------------------
    def read_init(self) -> protocol.Message:
        try:
            msg = self.control_reader.read_frame()
        except protocol.ProtocolError as e:
            self.fatal(f"control channel error: {e}")
        except OSError as e:
            self.fatal(f"control channel read failed: {e}")
        if msg is None:
            self.diag("control channel closed before init")
            self.exit(EXIT_OK)
        if msg.get("type") != "init":
            self.fatal(f"expected init as the first control message, got {msg.get('type')!r}")
        fields = {
            "protocol_version": int,
            "predictor_ref": str,
            "mode": str,
            "setup": str,
            "runtime_dir": str,
            "slots": list,
        }
        for name, kind in fields.items():
            if not isinstance(msg.get(name), kind) or isinstance(msg.get(name), bool):
                self.fatal(f"malformed init message: field {name!r} missing or not a {kind.__name__}")
        for s in msg["slots"]:
            if not isinstance(s, dict) or not isinstance(s.get("slot"), int) or not isinstance(s.get("socket"), str):
                self.fatal("malformed init message: bad slots entry")
        refs = msg.get("schema_refs")
        if refs is not None and (
            not isinstance(refs, dict)
            or not all(k in ("predict", "train") and isinstance(v, str) for k, v in refs.items())
        ):
            self.fatal("malformed init message: schema_refs is not an object of predict/train strings")
        return msg

    def start(self) -> None:
        from . import inputs
        from .slots import make_slots

        init = self.read_init()
        if init["protocol_version"] != protocol.PROTOCOL_VERSION:
            self.setup_failed(
                f"protocol version mismatch: the supervisor speaks version {init['protocol_version']}, "
                f"this worker speaks version {protocol.PROTOCOL_VERSION}"
            )
        if init["mode"] not in ("predict", "train") or init["setup"] not in ("full", "recycle"):
            self.setup_failed(f"unsupported mode {init['mode']!r} or setup {init['setup']!r}")
        self.runtime_dir = init["runtime_dir"]
        generation = init.get("generation")
        self.generation = generation if isinstance(generation, int) and not isinstance(generation, bool) else 0
        inputs.clear_stale(self.runtime_dir, self.generation)
        # Start-up milestones, in coglet's words: setup.logs shows them between the supervisor's own.
        self.milestone("File descriptor redirection complete")  # done in __init__, before any model code
        socks: list[tuple[int, socket.socket]] = []
        for s in init["slots"]:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # close-on-exec by default
            try:
                sock.connect(s["socket"])
            except OSError as e:
                self.setup_failed(f"cannot connect to slot {s['slot']} socket {s['socket']}: {e}")
            socks.append((s["slot"], sock))
        self.milestone("Connected to slot transport")
        self.milestone("Worker starting setup")
        try:
            self.milestone("Loading predictor")
            model = loader.load(init["predictor_ref"], init["mode"])
            if len(socks) > 1 and not model.is_async:
                raise loader.LoadError(
                    f"COG_MAX_CONCURRENCY > 1 requires an async run() or predict() method "
                    f"(concurrency is {len(socks)})"
                )
            setup = loader.setup_callable(model, init["setup"])
            if setup is not None:
                self.milestone("Running setup")
                self.run_blocking(setup())
        except loader.LoadError as e:  # the reference or the model's shape: the message says it all
            self.setup_failed(f"cannot load {init['predictor_ref']}: {e}")
        except BaseException:  # noqa: BLE001 - SystemExit in setup is a setup failure too
            self.setup_failed(traceback.format_exc())
        import cog

        self.model = model
        schema = loader.read_schema()
        if schema is None:
            try:
                schema = loader.build_schema(
                    model,
                    init.get("schema_refs"),
                    lambda text: self.control.try_send(protocol.worker_log("warning", text)),
                )
            except SchemaError as e:
                self.setup_failed(f"cannot build the OpenAPI schema of {init['predictor_ref']}: {e}")
            except Exception:  # noqa: BLE001 - a signature we did not foresee: say so, do not crash
                self.setup_failed(
                    f"cannot build the OpenAPI schema of {init['predictor_ref']}:\n{traceback.format_exc()}"
                )
        self.slots = make_slots(self, socks)
        for slot in self.slots:
            slot.start()

        # What setup's children are still writing belongs in setup.logs (coglet's too): wait for a
        # 50 ms pause in it, at most 0.5 s.
        self.flush_logs(quiet=0.05)
        msg = protocol.ready(platform.python_version(), cog.__version__, model.healthcheck() is not None, schema)
        try:
            # Under the log lock: output that reached a batch before ready is sent before it.
            with self.router.lock:
                self.router.flush_all()
                self.control.send(msg)
        except Exception as e:
            self.diag(f"cannot send ready: {e}")
            self.exit(EXIT_PROTOCOL)

    # -- control loop -----------------------------------------------------------------------------
    def serve(self) -> NoReturn:
        while True:
            try:
                msg = self.control_reader.read_frame()
            except protocol.ProtocolError as e:
                self.fatal(f"control channel error: {e}")
            except OSError as e:
                self.diag(f"control channel read failed: {e}")
                self.exit(EXIT_OK)
            if msg is None:
                self.diag("control channel closed (supervisor gone?), exiting")
                self.exit(EXIT_OK)
            kind = msg["type"]
            if kind == "cancel":
                self.handle_cancel(msg)
            elif kind == "healthcheck":
                if not isinstance(msg.get("id"), str):
                    self.fatal("malformed healthcheck message")
                healthcheck.start(self, msg["id"])
            elif kind == "heartbeat":
                # Answered here, on the thread that reads the control channel, taking no lock a
                # prediction holds: a worker busy in model code is alive and answers.
                seq = msg.get("seq")
                if not isinstance(seq, int):
                    self.fatal("malformed heartbeat message")
                self.control.try_send(protocol.heartbeat_ack(seq))
            elif kind == "shutdown":
                self.control.try_send(protocol.shutting_down())
                self.exit(EXIT_OK)
            elif kind == "init":
                self.control.try_send(protocol.worker_log("warning", "ignored a second init message"))
            else:
                self.fatal(f"control channel error: unknown message type {kind!r}")

    def handle_cancel(self, msg: protocol.Message) -> None:
        slot_index, pid = msg.get("slot"), msg.get("id")
        if not isinstance(slot_index, int) or not isinstance(pid, str):
            self.fatal("malformed cancel message")
        slot = next((s for s in self.slots if s.index == slot_index), None)
        if slot is not None and slot.cancel(pid):
            self.control.try_send(protocol.control_cancelled(slot_index, pid))
        else:
            self.control.try_send(
                protocol.worker_log("debug", f"slot {slot_index}: cancel for {pid}, which is not running there")
            )


def main() -> NoReturn:
    if sys.version_info < (3, 10):
        raise SystemExit("cogvisor worker needs Python >= 3.10")
    # Before any thread exists: a fork is only safe then.
    guard.start_group_guard(0)
    worker = Worker()
    worker.start()
    worker.serve()
