"""What an HTTP/2 stream carries besides a head and a body, with real clients (nghttp, curl)
through a real proxy to a backend that sends it (tests/support/extrasapp.py): trailers both
ways, 103 Early Hints, ``expect: 100-continue``, and the Via and request id a backend gets.

One proxy per build (compiled and LIMPET_NO_EXTENSIONS=1, the conftest's ``wire_core``) serves
every test of the module.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.procs import Procs, free_port, which_or_skip


@pytest.fixture(scope="module")
def proxy(wire_core: str) -> Iterator[Proxy]:
    owner = Procs()
    try:
        port = free_port()
        owner.start(
            [sys.executable, "-m", "tests.support.extrasapp", "--port", str(port)],
            wait_for=("127.0.0.1", port),
        )
        yield start_proxy(owner, {"extras": f"http://127.0.0.1:{port}"}, "--h2c", admin=False)
    finally:
        owner.close()


def nghttp(*args: str) -> str:
    """nghttp's verbose trace (every frame and field, in order) of one h2c connection."""
    exe = which_or_skip("nghttp")
    done = subprocess.run(
        [exe, "-v", "--no-dep", "-t", "10", *args], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    return done.stdout


def received(trace: str, sid: int) -> list[str]:
    """The frames and fields nghttp received on stream ``sid``, in order, as short lines."""
    out = []
    for line in trace.splitlines():
        field = re.search(rf"recv \(stream_id={sid}\) (.*)$", line)
        frame = re.search(rf"recv (\w+) frame <.*stream_id={sid}>", line)
        if field:
            out.append(field.group(1))
        elif frame:
            out.append(frame.group(1))
        elif out and "; END_STREAM" in line and out[-1].isupper():
            out[-1] += " END_STREAM"
    return out


def test_backend_trailers_reach_the_h2_client_as_trailing_headers(proxy: Proxy) -> None:
    got = received(nghttp(f"{proxy.url}/trailers"), 1)
    assert ":status: 200" in got and "DATA" in got
    tail = got[got.index("DATA") + 1 :]
    # the trailer fields, then the HEADERS frame that carries them, ending the stream
    assert tail == ["grpc-status: 0", "grpc-message: fine", "HEADERS END_STREAM"], got
    assert "smuggled" not in str(got) and "forbidden" not in str(got)  # RFC 9110 §6.5.1


def test_twin_an_http11_client_gets_no_trailers(proxy: Proxy) -> None:
    """HTTP/1.1 clients keep today's behaviour: the proxy ends the chunked body without the
    backend's trailer section (RFC 9112 §7.1.2 lets a proxy drop it)."""
    exe = which_or_skip("curl")
    done = subprocess.run(
        [exe, "-sS", "--http1.1", "--raw", "-i", "--max-time", "10", f"{proxy.url}/trailers"],
        capture_output=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(b"6\r\nhello\n\r\n0\r\n\r\n"), done.stdout[-200:]
    assert b"grpc" not in done.stdout.lower()


def test_request_trailers_reach_the_backend_in_the_chunked_body(
    proxy: Proxy, tmp_path_factory: pytest.TempPathFactory
) -> None:
    body = tmp_path_factory.mktemp("h2") / "body"
    body.write_bytes(b"ping")
    trace = nghttp(
        "--no-content-length", "-d", str(body), "--trailer", "grpc-timeout: 1S",
        "--trailer", "content-type: text/forbidden", f"{proxy.url}/echo",
    )  # fmt: skip
    assert "Transfer-Encoding: chunked" in trace  # (the echoed request the backend read)
    # (text mode reads each CRLF as a newline)
    assert "\n4\nping\n0\ngrpc-timeout: 1S\n\n" in trace, trace[-800:]
    assert "forbidden" not in trace.split("Transfer-Encoding: chunked", 1)[1]


def test_twin_request_trailers_with_a_content_length_are_dropped(
    proxy: Proxy, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A body framed by content-length has no trailer section in HTTP/1.1: the trailers do
    not reach the backend (and the request still does)."""
    body = tmp_path_factory.mktemp("h2") / "body"
    body.write_bytes(b"ping")
    trace = nghttp("-d", str(body), "--trailer", "grpc-timeout: 1S", f"{proxy.url}/echo")
    assert "\ncontent-length: 4\n" in trace and "\nping" in trace
    assert "\ngrpc-timeout: 1S\n" not in trace


def test_early_hints_are_relayed_before_the_final_response(proxy: Proxy) -> None:
    trace = nghttp(f"{proxy.url}/early", f"{proxy.url}/plain")
    early, plain = received(trace, 1), received(trace, 3)
    statuses = [f for f in early if f.startswith(":status")]
    assert statuses == [":status: 103", ":status: 200"], early
    hints = early[: early.index(":status: 200")]
    assert "link: </style.css>; rel=preload" in hints and "HEADERS" in hints
    # twin: a response without an interim one gets one HEADERS
    assert [f for f in plain if f.startswith(":status")] == [":status: 200"], plain


def test_expect_100_continue_is_answered_by_the_proxy(proxy: Proxy) -> None:
    """curl holds the body until a 100 comes (up to --expect100-timeout, set far beyond
    --max-time here): without the proxy's 100 the request times out."""
    exe = which_or_skip("curl")
    done = subprocess.run(
        [exe, "-sS", "-v", "--http2-prior-knowledge", "--max-time", "10",
         "--expect100-timeout", "60", "-H", "Expect: 100-continue", "--data-binary", "hello",
         f"{proxy.url}/echo"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    assert "< HTTP/2 100" in done.stderr and "< HTTP/2 200" in done.stderr
    assert "hello" in done.stdout
    assert "expect" not in done.stdout.lower()  # the backend never sees the expectation


def test_via_names_http2_and_the_request_id_is_set(proxy: Proxy) -> None:
    """RFC 9110 §7.6.3: the Via a backend gets names the protocol the request came with;
    the request id is added as for HTTP/1.1. Twin: an HTTP/1.1 request says 1.1."""
    exe = which_or_skip("curl")
    for flag, via in (
        ("--http2-prior-knowledge", "Via: 2 limpet"),
        ("--http1.1", "Via: 1.1 limpet"),
    ):
        done = subprocess.run(
            [exe, "-sS", flag, "--max-time", "10", f"{proxy.url}/echo"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"\n{via}\n" in done.stdout, done.stdout  # (text mode: each CRLF a newline)
        assert re.search(r"^X-Request-Id: \S+$", done.stdout, re.M), done.stdout


def test_a_local_answer_made_outside_a_client_read_is_sent(wire_core: str) -> None:
    """The backend refuses the connection: the 503 is decided in the connect task, not while
    the client's bytes are read, and must still be sent (without the flush it schedules,
    the compiled build's stream hung until curl's --max-time failed the request)."""
    owner = Procs()
    try:
        proxy = start_proxy(
            owner, {"gone": f"http://127.0.0.1:{free_port()}"}, "--h2c", "--no-health"
        )
        exe = which_or_skip("curl")
        done = subprocess.run(
            [exe, "-sS", "--http2-prior-knowledge", "--max-time", "10", "-w", "%{http_code}",
             f"{proxy.url}/"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout.endswith("503"), done.stderr
    finally:
        owner.close()
