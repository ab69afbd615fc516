"""Input coercion by annotation and URL downloads (against a local HTTP server)."""

import base64
import http.server
import io
import os
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import cog
from cogvisor_worker import inputs
from cogvisor_worker.inputs import Coercion, Downloader, InputError


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/missing"):
            self.send_error(404, "File not found")
            return
        if self.path.startswith("/boom"):
            self.send_error(503, "Unavailable")
            return
        if self.path.startswith("/slow"):
            time.sleep(0.4)
        if self.path.startswith("/trickle"):  # one byte every 0.2 s: never stalls long enough to time out
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(150):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:  # the client went away
                pass
            return
        if self.path.startswith("/big"):
            body = b"x" * 5000
        else:
            body = f"body of {self.path} ua={self.headers.get('User-Agent')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_coercions_follow_annotations() -> None:
    def run(
        p: cog.Path, op: Optional[cog.Path], ps: list[cog.Path], f: cog.File, s: cog.Secret,
        os_: cog.Secret | None, x: float, xs: list[float], text: str, n: int,
    ) -> None: ...

    assert inputs.coercions(run) == {
        "p": Coercion("path"), "op": Coercion("path"), "ps": Coercion("path", True), "f": Coercion("file"),
        "s": Coercion("secret"), "os_": Coercion("secret"), "x": Coercion("float"), "xs": Coercion("float", True),
    }


def test_plain_strings_pass_through_and_secrets_wrap() -> None:
    d = Downloader()
    got = inputs.prepare(
        {"p": "/etc/hostname", "s": "hunter2", "x": 3, "t": "http://not-a-path-param", "none": None},
        {"p": Coercion("path"), "s": Coercion("secret"), "x": Coercion("float"), "none": Coercion("path")},
        d,
    )
    assert got["p"] == "/etc/hostname" and type(got["p"]) is str
    assert isinstance(got["s"], cog.Secret) and got["s"].get_secret_value() == "hunter2"
    assert got["x"] == 3.0 and isinstance(got["x"], float)
    assert got["t"] == "http://not-a-path-param" and got["none"] is None
    assert d.dir is None, "nothing downloaded, no temp dir"


def test_url_and_data_url_paths_are_downloaded_then_cleaned_up(server: str) -> None:
    d = Downloader()
    os.environ["COG_USER_AGENT"] = "cog-test/1"
    try:
        got = inputs.prepare(
            {
                "p": f"{server}/dir/hello%20world.txt?sig=x",
                "ps": [f"{server}/a.txt", "data:text/plain;base64," + base64.b64encode(b"inline").decode()],
            },
            {"p": Coercion("path"), "ps": Coercion("path", True)},
            d,
        )
    finally:
        del os.environ["COG_USER_AGENT"]
    p = got["p"]
    assert isinstance(p, cog.Path) and p.name.endswith("hello world.txt") and p.name.startswith("tmp")
    assert p.read_text() == "body of /dir/hello%20world.txt?sig=x ua=cog-test/1"
    a, inline = got["ps"]
    assert a.read_text().startswith("body of /a.txt") and inline.read_bytes() == b"inline"
    assert inline.name.endswith("file.txt")
    assert os.path.dirname(p) == d.dir
    d.cleanup()
    assert not p.exists() and not a.exists()


def test_downloads_run_in_parallel(server: str) -> None:
    d = Downloader()
    start = time.monotonic()
    got = d.download_all([f"{server}/slow{i}" for i in range(6)])
    elapsed = time.monotonic() - start
    assert len(got) == 6
    assert {os.path.dirname(p) for p in got.values()} == {d.dir}, "one directory per prediction"
    assert elapsed < 6 * 0.4, f"six 0.4 s downloads took {elapsed:.2f} s: not parallel"
    d.cleanup()


def test_http_error_names_url_and_status(server: str) -> None:
    d = Downloader()
    url = f"{server}/missing.txt"
    with pytest.raises(InputError) as e:
        inputs.prepare({"p": url}, {"p": Coercion("path")}, d)
    assert str(e.value) == f"Input validation error: 404 Client Error: File not found for url: {url}"
    with pytest.raises(InputError, match=r"503 Server Error: Unavailable for url: .*/boom"):
        d.download(f"{server}/boom")
    d.cleanup()


def test_unreachable_host_and_size_limit(server: str) -> None:
    with pytest.raises(InputError, match=r"cannot download http://127\.0\.0\.1:9/x"):
        Downloader(timeout=2).download("http://127.0.0.1:9/x")
    d = Downloader(max_bytes=1000)
    with pytest.raises(InputError, match=r"/big is larger than the limit of 1000 bytes"):
        d.download(f"{server}/big")
    d.cleanup()


def test_timeout_is_applied(server: str) -> None:
    d = Downloader(timeout=0.1)
    with pytest.raises(InputError, match="slow"):
        d.download(f"{server}/slow")
    d.cleanup()


def test_file_inputs(server: str) -> None:
    d = Downloader()
    got = inputs.prepare(
        {"f": "data:text/plain,hi%20there", "u": f"{server}/u.bin", "plain": "/x"},
        {"f": Coercion("file"), "u": Coercion("file"), "plain": Coercion("file")},
        d,
    )
    assert isinstance(got["f"], io.BytesIO) and got["f"].read() == b"hi there"
    assert isinstance(got["u"], cog.URLFile) and got["u"].read().startswith(b"body of /u.bin")
    assert got["plain"] == "/x"


def test_malformed_data_url() -> None:
    with pytest.raises(InputError, match="malformed data URL"):
        inputs.decode_data_url("data:text/plain;base64")


def test_downloads_share_a_deadline(server: str, tmp_path: Any) -> None:
    d = Downloader(deadline=0.6, directory=str(tmp_path / "inputs"))
    start = time.monotonic()
    with pytest.raises(InputError) as e:
        d.download_all([f"{server}/a.txt", f"{server}/trickle"])
    elapsed = time.monotonic() - start
    assert str(e.value) == (
        f"Input validation error: download of {server}/trickle did not finish within 0.6 s "
        "(COGVISOR_DOWNLOAD_DEADLINE)"
    )
    assert elapsed < 3, elapsed
    d.cleanup()
    assert list((tmp_path / "inputs").iterdir()) == []


def test_the_deadline_comes_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("COGVISOR_DOWNLOAD_DEADLINE", "12.5")
    assert Downloader().deadline == 12.5
    monkeypatch.setenv("COGVISOR_DOWNLOAD_DEADLINE", "nonsense")
    assert Downloader().deadline == inputs.DEFAULT_DEADLINE == 600


def test_abort_stops_a_trickling_download_at_once(server: str, tmp_path: Any) -> None:
    d = Downloader(directory=str(tmp_path / "inputs"), prefix="7-")
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            d.download_all([f"{server}/trickle", f"{server}/trickle2"])
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    # both downloads have started writing into the prediction's directory
    deadline = time.monotonic() + 10
    while not (d.dir and len(os.listdir(d.dir)) == 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.dir is not None and os.path.basename(d.dir).startswith("7-")
    assert os.path.dirname(d.dir) == str(tmp_path / "inputs")
    time.sleep(0.3)
    aborted_at = time.monotonic()
    d.abort("cancelled")
    t.join(timeout=10)
    assert not t.is_alive()
    assert time.monotonic() - aborted_at < 1.0
    assert type(result.get("error")).__name__ == "_Aborted", result
    d.cleanup()
    assert list((tmp_path / "inputs").iterdir()) == []
    # an aborted downloader starts nothing more
    with pytest.raises(Exception, match="cancelled"):
        d.download_all([f"{server}/a.txt"])


def test_a_failed_download_stops_the_others(server: str) -> None:
    d = Downloader()
    start = time.monotonic()
    with pytest.raises(InputError, match=r"404 Client Error: File not found for url: .*/missing"):
        d.download_all([f"{server}/trickle", f"{server}/missing"])
    assert time.monotonic() - start < 3
    d.cleanup()


def test_stale_inputs_of_earlier_generations_are_removed(tmp_path: Any) -> None:
    root = tmp_path / "inputs"
    for name in ("1-abc", "2-def", "3-ghi", "other"):
        (root / name).mkdir(parents=True)
        (root / name / "f").write_text("x")
    inputs.clear_stale(str(tmp_path), 3)
    assert sorted(p.name for p in root.iterdir()) == ["3-ghi", "other"]
    inputs.clear_stale(str(tmp_path / "missing"), 3)  # no inputs directory: nothing to do
