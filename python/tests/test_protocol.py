"""The Python builders must produce the fixture JSON byte for byte (the Rust suite checks the same file)."""

from __future__ import annotations

import io
import json
import os
import struct
from typing import Any, Callable

import pytest

from cogvisor_worker import protocol as p

FIXTURES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "protocol-fixtures",
    "messages.json",
)

BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "control_request_cancel": lambda: p.cancel(0, "pred_123"),
    "control_request_healthcheck": lambda: p.healthcheck("hc_1"),
    "control_request_init": lambda: p.init(
        1,
        1,
        "predict.py:Predictor",
        "predict",
        "full",
        "/tmp/cogvisor-1234",
        [p.slot_socket(0, "/tmp/cogvisor-1234/slot-0.sock"), p.slot_socket(1, "/tmp/cogvisor-1234/slot-1.sock")],
        {"predict": "predict.py:Predictor", "train": "train.py:train"},
    ),
    "control_request_init_recycle_train": lambda: p.init(
        1, 7, "train.py:train", "train", "recycle", "/tmp/cogvisor-1234",
        [p.slot_socket(0, "/tmp/cogvisor-1234/slot-0.sock")],
    ),
    "control_request_heartbeat": lambda: p.heartbeat(42),
    "control_request_shutdown": p.shutdown,
    "control_response_cancelled": lambda: p.control_cancelled(1, "pred_123"),
    "control_response_dropped_logs": lambda: p.dropped_logs(12, 5000),
    "control_response_failed": lambda: p.control_failed(1, "slot socket closed: Broken pipe"),
    "control_response_fatal": lambda: p.fatal("control channel write failed"),
    "control_response_healthcheck_result_healthy": lambda: p.healthcheck_result("hc_1", "healthy"),
    "control_response_healthcheck_result_unhealthy": lambda: p.healthcheck_result(
        "hc_2", "unhealthy", "user-defined healthcheck returned False"
    ),
    "control_response_heartbeat_ack": lambda: p.heartbeat_ack(42),
    "control_response_idle": lambda: p.idle(0),
    "control_response_log": lambda: p.control_log("stderr", "loading weights\n"),
    "control_response_ready": lambda: p.ready(
        "3.11.7", "0.1.0", True, {"info": {"title": "Cog", "version": "0.1.0"}, "openapi": "3.0.2"}
    ),
    "control_response_ready_without_schema": lambda: p.ready("3.10.12", "0.1.0", False),
    "control_response_recycle_requested": lambda: p.recycle_requested("CUDA context lost", False),
    "control_response_setup_failed": lambda: p.setup_failed(
        "Traceback (most recent call last):\n  ...\nRuntimeError: boom in setup\n"
    ),
    "control_response_shutting_down": p.shutting_down,
    "control_response_worker_log": lambda: p.worker_log(
        "warning", "slot 0: cancel for a prediction that already ended"
    ),
    "slot_request_predict": lambda: p.predict(
        "pred_123", "/tmp/cogvisor-1234/outputs/pred_123", input={"text": "world"}, context={"user": "alice"}
    ),
    "slot_request_predict_spilled_input": lambda: p.predict(
        "pred_456", "/tmp/cogvisor-1234/outputs/pred_456", input_file="/tmp/cogvisor-1234/spill/spill-1.json"
    ),
    "slot_response_cancelled": lambda: p.slot_cancelled("pred_123"),
    "slot_response_done": lambda: p.done("pred_123", 0.25, False),
    "slot_response_failed": lambda: p.slot_failed("pred_123", "ValueError: bad input"),
    "slot_response_file_output": lambda: p.file_output(
        "/tmp/cogvisor-1234/outputs/pred_123/out.png", "file", "image/png"
    ),
    "slot_response_file_output_oversized": lambda: p.file_output(
        "/tmp/cogvisor-1234/spill/spill-2.json", "oversized"
    ),
    "slot_response_log": lambda: p.slot_log("stdout", "step 1\n"),
    "slot_response_metric": lambda: p.metric("token_count", 3, "increment"),
    "slot_response_recycle_requested": lambda: p.slot_recycle_requested("every third prediction (3)", True),
    "slot_response_output": lambda: p.output("hello world"),
}


def load_fixtures() -> dict[str, str]:
    with open(FIXTURES, encoding="utf-8") as f:
        return json.load(f)


def test_every_fixture_has_a_builder() -> None:
    assert set(load_fixtures()) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(load_fixtures()))
def test_builder_matches_fixture_bytes(name: str) -> None:
    fixture = load_fixtures()[name]
    msg = BUILDERS[name]()
    assert p.encode_json(msg) == fixture.encode("utf-8")
    assert json.dumps(msg, ensure_ascii=False, separators=(",", ":")) == fixture
    assert p.decode_payload(fixture.encode("utf-8")) == msg
    # the frame is the length prefix plus exactly those bytes
    frame = p.encode_frame(msg)
    assert frame[:4] == struct.pack(">I", len(fixture.encode("utf-8")))
    assert frame[4:] == fixture.encode("utf-8")


def test_shutdown_frame_header_matches_rust() -> None:
    assert p.encode_frame(p.shutdown())[:4] == bytes([0, 0, 0, 19])


def test_non_ascii_is_sent_as_utf8() -> None:
    assert p.encode_json(p.slot_log("stdout", "🦀 é\n")) == '{"type":"log","source":"stdout","data":"🦀 é\\n"}'.encode()


# ---------------------------------------------------------------------------------------------------
# frame codec


def reader_over(chunks: list[bytes], max_len: int = p.MAX_FRAME_LEN) -> p.FrameReader:
    it = iter(chunks)

    def recv(n: int) -> bytes:
        return next(it, b"")

    return p.FrameReader(recv, max_len)


def test_split_frame_byte_by_byte() -> None:
    whole = p.encode_frame(p.idle(3)) + p.encode_frame(p.shutting_down())
    r = reader_over([bytes([b]) for b in whole])
    assert r.read_frame() == {"type": "idle", "slot": 3}
    assert r.read_frame() == {"type": "shutting_down"}
    assert r.read_frame() is None


def test_two_frames_in_one_read() -> None:
    r = reader_over([p.encode_frame(p.shutting_down()) + p.encode_frame(p.idle(0))])
    assert r.read_frame() == p.shutting_down()
    assert r.read_frame() == p.idle(0)
    assert r.read_frame() is None


def test_for_file() -> None:
    r = p.FrameReader.for_file(io.BytesIO(p.encode_frame(p.healthcheck("x"))))
    assert r.read_frame() == p.healthcheck("x")
    assert r.read_frame() is None


def test_oversized_length_is_an_error_before_the_payload() -> None:
    r = reader_over([struct.pack(">I", p.MAX_FRAME_LEN + 1)])
    with pytest.raises(p.ProtocolError, match="exceeds"):
        r.read_frame()


def test_length_at_the_limit_is_accepted() -> None:
    payload = b'{"type":"log","source":"stdout","data":"' + b"a" * 100 + b'"}'
    r = reader_over([struct.pack(">I", len(payload)) + payload], max_len=len(payload))
    assert r.read_frame()["type"] == "log"  # type: ignore[index]


def test_malformed_json_is_an_error() -> None:
    with pytest.raises(p.ProtocolError, match="malformed"):
        reader_over([struct.pack(">I", 9) + b"{not json"]).read_frame()


def test_invalid_utf8_is_an_error() -> None:
    with pytest.raises(p.ProtocolError):
        reader_over([struct.pack(">I", 3) + b"\xff\xfe\xfd"]).read_frame()


def test_a_frame_after_a_bad_one_in_the_same_buffer_is_not_read_early() -> None:
    # The payload is decoded from the reader's buffer in place; what follows it stays buffered.
    good = p.encode_frame(p.idle(7))
    r = reader_over([good + good[:3], good[3:]])
    assert r.read_frame() == p.idle(7)
    assert r.read_frame() == p.idle(7)
    assert r.read_frame() is None


def test_encoded_messages_send_their_prebuilt_frame() -> None:
    msg = p.output({"a": "é"})
    payload = p.encode_json(msg)
    enc = p.Encoded(msg, (payload[:5], payload[5:]))
    assert enc == msg, "it reads like the plain message"
    assert p.encode_json(enc) == payload
    assert p.encode_frame(enc) == p.encode_frame(msg)
    too_big = p.Encoded(p.output("x"), (b"x" * (p.MAX_FRAME_LEN + 1),))
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.encode_frame(too_big)


def test_non_object_is_an_error() -> None:
    with pytest.raises(p.ProtocolError):
        reader_over([struct.pack(">I", 2) + b"[]"]).read_frame()


def test_eof_mid_frame_is_an_error() -> None:
    frame = p.encode_frame(p.idle(1))
    with pytest.raises(p.ProtocolError):
        reader_over([frame[:-2]]).read_frame()


def test_encoding_refuses_oversized_frames_and_nan() -> None:
    with pytest.raises(p.ProtocolError):
        p.encode_frame(p.output("a" * (p.MAX_FRAME_LEN + 1)))
    with pytest.raises(p.ProtocolError):
        p.encode_frame(p.output(float("nan")))


# ---------------------------------------------------------------------------------------------------
# truncation


def test_short_text_is_unchanged() -> None:
    assert p.truncate_log("🦀" * 10) == "🦀" * 10


def test_text_at_the_limit_is_unchanged() -> None:
    text = "a" * p.MAX_LOG_LEN
    assert p.truncate_log(text) == text


def test_ascii_text_over_the_limit() -> None:
    cut = p.truncate_log("a" * (p.MAX_LOG_LEN + 1))
    assert len(cut.encode()) == p.MAX_LOG_LEN
    assert cut.endswith(p.LOG_TRUNCATION_NOTICE)


def test_long_text_is_cut_on_a_char_boundary_with_the_notice() -> None:
    cut = p.truncate_log("🦀" * (p.MAX_LOG_LEN // 4 + 1))
    assert len(cut.encode()) <= p.MAX_LOG_LEN
    assert cut.endswith(p.LOG_TRUNCATION_NOTICE)
    body = cut[: -len(p.LOG_TRUNCATION_NOTICE)]
    assert set(body) == {"🦀"}
    assert len(body.encode()) > p.MAX_LOG_LEN - len(p.LOG_TRUNCATION_NOTICE) - 4


def test_log_builders_truncate() -> None:
    msg = p.slot_log("stdout", "x" * (p.MAX_LOG_LEN + 10))
    assert len(msg["data"].encode()) == p.MAX_LOG_LEN


# ---------------------------------------------------------------------------------------------------
# spill


def test_spill_round_trip_deletes_the_file(tmp_path: Any) -> None:
    path = p.write_spill(str(tmp_path), b'{"a":1}')
    assert os.path.basename(path).startswith("spill-") and path.endswith(".json")
    assert p.take_spill(str(tmp_path), path) == {"a": 1}
    assert not os.path.exists(path)


def test_spill_written_in_pieces_holds_them_in_order(tmp_path: Any) -> None:
    path = p.write_spill_chunks(str(tmp_path / "spill"), iter([b'{"a":', b'"\xc3\xa9"', b"}"]))
    assert open(path, "rb").read() == b'{"a":"\xc3\xa9"}'
    assert p.take_spill(str(tmp_path / "spill"), path) == {"a": "é"}


def test_a_failed_spill_write_leaves_no_file(tmp_path: Any) -> None:
    def pieces() -> Any:
        yield b'"abc'
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    with pytest.raises(UnicodeEncodeError):
        p.write_spill_chunks(str(tmp_path), pieces())
    assert os.listdir(tmp_path) == []


def test_corrupt_spill_is_deleted_before_parsing(tmp_path: Any) -> None:
    path = tmp_path / "spill-x.json"
    path.write_text("not json")
    with pytest.raises(p.ProtocolError):
        p.take_spill(str(tmp_path), str(path))
    assert not path.exists()


def test_spill_outside_the_dir_is_refused(tmp_path: Any) -> None:
    (tmp_path / "spill").mkdir()
    victim = tmp_path / "precious.json"
    victim.write_text("{}")
    with pytest.raises(p.ProtocolError):
        p.take_spill(str(tmp_path / "spill"), str(victim))
    with pytest.raises(p.ProtocolError):
        p.take_spill(str(tmp_path / "spill"), str(tmp_path / "spill" / ".." / "precious.json"))
    assert victim.exists()
