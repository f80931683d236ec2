"""The known HTTP/2 attacks against a real proxy, each bounded, from a hostile client
(tests/support/h2hostile.py); each flood has a twin below its limit that the proxy serves.

Limits (limpet.proxy.h2.limits.H2Limits): 100 concurrent streams, 200 resets / 50 PINGs /
50 SETTINGS / 100 empty frames per 10 s, 32 CONTINUATIONs and 64 KB per header block, a
64 KB header list (decoded), a 4 KB HPACK table, 64 KB held per stream for a shut window.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.h2hostile import ENHANCE_YOUR_CALM, PROTOCOL_ERROR, REFUSED_STREAM, Hostile
from tests.support.procs import Procs, free_port


@pytest.fixture(scope="module", params=["compiled"])
def wire_core(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param  # (test_h2.py says why one build)


@pytest.fixture(scope="module")
def proxy(three: dict[str, str]) -> Iterator[Proxy]:
    owner = Procs()
    try:
        yield start_proxy(owner, three, "--h2c")
    finally:
        owner.close()


def test_settings_bound_streams_headers_and_table(proxy: Proxy) -> None:
    with Hostile(proxy.port) as h:
        s = h.seen.settings
        assert s[0x3] == 100  # MAX_CONCURRENT_STREAMS
        assert s[0x6] == 65536  # MAX_HEADER_LIST_SIZE (limits.max-header-bytes)
        assert s[0x1] == 4096  # HEADER_TABLE_SIZE
        assert s[0x8] == 1  # ENABLE_CONNECT_PROTOCOL (RFC 8441)


@pytest.mark.parametrize(("pairs", "ends"), [(300, True), (100, False)], ids=["flood", "twin"])
def test_rapid_reset(proxy: Proxy, pairs: int, ends: bool) -> None:
    with Hostile(proxy.port) as h:
        for i in range(pairs):
            sid = 2 * i + 1
            h.send(h.request(sid, f"/r{i}"), h.rst(sid))
        if ends:
            assert h.ended_with() == ENHANCE_YOUR_CALM
        else:
            assert h.alive()


@pytest.mark.parametrize(("count", "ends"), [(300, True), (100, False)], ids=["flood", "twin"])
def test_provoked_resets_count_too(proxy: Proxy, count: int, ends: bool) -> None:
    """MadeYouReset (CVE-2025-8671): malformed requests make the proxy reset the streams."""
    with Hostile(proxy.port) as h:
        for i in range(count):
            h.send(h.request(2 * i + 1, f"/m{i}", extra=[("connection", "close")]))
            if i % 50 == 49 and h.seen.goaway is None:
                h.alive()  # in rounds under the stream limit (over it: REFUSED_STREAM, not these)
        if ends:
            assert h.ended_with() == ENHANCE_YOUR_CALM
        else:
            assert h.alive()


FLOODS = {
    "ping": (lambda h: h.ping(), 60, 40),
    "settings": (lambda h: h.settings(), 60, 40),
}


@pytest.mark.parametrize("kind", list(FLOODS))
@pytest.mark.parametrize("flood", [True, False], ids=["flood", "twin"])
def test_control_frame_floods(proxy: Proxy, kind: str, flood: bool) -> None:
    make, over, under = FLOODS[kind]
    with Hostile(proxy.port) as h:
        h.send(*[make(h) for _ in range(over if flood else under)])
        if flood:
            assert h.ended_with() == ENHANCE_YOUR_CALM
        else:
            assert h.alive()


@pytest.mark.parametrize(("count", "ends"), [(150, True), (50, False)], ids=["flood", "twin"])
def test_empty_data_frames(proxy: Proxy, count: int, ends: bool) -> None:
    with Hostile(proxy.port) as h:
        h.send(h.headers(1, h.block("/e", "POST"), end_stream=False))
        h.send(*[h.data(1) for _ in range(count)])
        if ends:
            assert h.ended_with() == ENHANCE_YOUR_CALM
        else:
            h.send(h.data(1, b"x", end=True))
            assert h.read_until(lambda s: 1 in s.ended).status.get(1) == 200


@pytest.mark.parametrize(("pieces", "ends"), [(40, True), (10, False)], ids=["flood", "twin"])
def test_continuation_flood(proxy: Proxy, pieces: int, ends: bool) -> None:
    with Hostile(proxy.port) as h:
        block = h.block("/c", extra=[("x-pad", "p" * 200)])
        step = max(1, len(block) // (pieces + 1))
        parts = [block[i * step : (i + 1) * step] for i in range(pieces)] + [block[pieces * step :]]
        frames = [h.headers(1, parts[0], end_headers=False)]
        frames += [h.continuation(1, p, end=i == len(parts) - 2) for i, p in enumerate(parts[1:])]
        h.send(*frames)
        if ends:
            assert h.ended_with() == ENHANCE_YOUR_CALM
        else:
            assert h.read_until(lambda s: 1 in s.ended).status.get(1) == 200


def test_header_bytes_per_block(proxy: Proxy) -> None:
    with Hostile(proxy.port) as h:
        block = h.block("/big", extra=[(f"x-{i}", "v" * 4000) for i in range(20)])  # ~80 KB
        parts = [block[i : i + 16000] for i in range(0, len(block), 16000)]
        frames = [h.headers(1, parts[0], end_headers=False)]
        frames += [h.continuation(1, p, end=i == len(parts) - 2) for i, p in enumerate(parts[1:])]
        h.send(*frames)
        assert h.ended_with() == ENHANCE_YOUR_CALM


@pytest.mark.parametrize(("refs", "ends"), [(40, True), (4, False)], ids=["bomb", "twin"])
def test_hpack_bomb(proxy: Proxy, refs: int, ends: bool) -> None:
    """One 2 KB field in the dynamic table, then referenced by one byte each: 40 references
    decode to 80 KB from a block of ~2 KB, over MAX_HEADER_LIST_SIZE."""
    with Hostile(proxy.port) as h:
        block = h.block("/bomb", extra=[("x-bomb", "b" * 2000)] * refs)
        assert len(block) < 3000
        h.send(h.headers(1, block))
        if ends:
            assert h.ended_with() is not None  # ENHANCE_YOUR_CALM or COMPRESSION_ERROR
        else:
            assert h.read_until(lambda s: 1 in s.ended).status.get(1) == 200


def test_connection_specific_field_is_a_stream_error(proxy: Proxy) -> None:
    with Hostile(proxy.port) as h:
        h.send(h.request(1, "/bad", extra=[("connection", "keep-alive")]))
        h.send(h.request(3, "/good"))  # twin on the same connection
        seen = h.read_until(lambda s: 1 in s.resets and 3 in s.ended)
        assert seen.resets[1] == PROTOCOL_ERROR and 1 not in seen.status
        assert seen.status[3] == 200
        assert h.alive()


def test_answered_here_connect_and_too_many_fields(proxy: Proxy) -> None:
    with Hostile(proxy.port) as h:
        connect = h.encoder.encode([(":method", "CONNECT"), (":authority", "db.internal:5432")])
        h.send(h.headers(1, connect, end_stream=False))
        many = h.block("/many", extra=[(f"x-{i}", "v") for i in range(120)])
        h.send(h.headers(3, many))
        h.send(h.request(5, "/fine", extra=[(f"x-{i}", "v") for i in range(90)]))  # twin
        seen = h.read_until(lambda s: {1, 3, 5} <= s.ended)
        assert (seen.status[1], seen.status[3], seen.status[5]) == (501, 431, 200)
        assert h.alive()


def test_streams_past_the_limit_are_refused(proxy: Proxy) -> None:
    with Hostile(proxy.port) as h:
        for i in range(100):  # POSTs whose body never ends: they stay open
            h.send(h.headers(2 * i + 1, h.block(f"/o{i}", "POST"), end_stream=False))
        assert h.alive()  # 100 open: fine
        h.send(h.request(201, "/one-too-many"))
        seen = h.read_until(lambda s: 201 in s.resets or s.goaway is not None)
        assert 201 not in seen.status
        assert seen.resets.get(201) == REFUSED_STREAM  # a stream error (RFC 9113 §5.1.2)...
        assert h.alive()  # ...the connection and its 100 streams go on
        h.send(h.data(1, b"", end=True))  # one of them ends: room for one more
        assert h.read_until(lambda s: 1 in s.ended).status[1] == 200
        h.send(h.request(203, "/now-fine"))
        assert h.read_until(lambda s: 203 in s.ended).status[203] == 200


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.parametrize("shut", [True, False], ids=["window-zero", "twin"])
def test_a_shut_window_holds_the_backend_not_memory(
    procs: Procs, shut: bool, tmp_path: object
) -> None:
    """The client's window stays at zero while the backend has 32 MB to send: the proxy holds
    at most its send buffer and what the sockets take; the twin reads it all."""
    root = procs.tmp / "www"
    root.mkdir()
    (root / "big").write_bytes(os.urandom(1 << 20) * 32)
    port = free_port()
    procs.start(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        wait_for=("127.0.0.1", port),
    )
    proxy = start_proxy(procs, {"files": f"http://127.0.0.1:{port}"}, "--h2c")
    pid = proxy.proc.pid  # type: ignore[attr-defined]
    before = rss_kb(pid)
    with Hostile(proxy.port, settings={0x4: 0} if shut else None) as h:
        h.auto_window = not shut
        h.send(h.request(1, "/big"))
        if shut:
            h.read_until(lambda s: 1 in s.status)
            for _ in range(5):
                assert h.alive()
            assert h.seen.body.get(1, 0) == 0
            assert rss_kb(pid) - before < 12 * 1024  # KB: not the 32 MB on offer
        else:
            seen = h.read_until(lambda s: 1 in s.ended, timeout=60)
            assert seen.body[1] == 32 << 20


def test_idle_connection_gets_goaway(procs: Procs, three: dict[str, str]) -> None:
    config = procs.tmp / "idle.yaml"
    config.write_text("timeouts:\n  idle: 0.5\n  header: 0.5\n")
    proxy = start_proxy(procs, three, "--h2c", "--config", str(config))
    with Hostile(proxy.port) as h:
        h.send(h.request(1, "/"))
        assert h.read_until(lambda s: 1 in s.ended).status[1] == 200
        assert h.ended_with() == 0  # NO_ERROR, once idle
        assert h.seen.goaway is not None and h.seen.goaway.last_stream_id == 1


def test_a_closed_websocket_stream_is_forgotten(procs: Procs, three: dict[str, str]) -> None:
    """Both halves of a WebSocket stream end (the client's END_STREAM, the backend's close):
    the connection has no stream left, so its idle timeout ends it (a stream kept in the map
    would hold the connection open forever, and the map would grow with every WebSocket)."""
    config = procs.tmp / "idle.yaml"
    config.write_text("timeouts:\n  idle: 0.5\n")
    proxy = start_proxy(procs, three, "--h2c", "--config", str(config))
    with Hostile(proxy.port) as h:
        h.send(h.websocket(1))
        assert h.read_until(lambda s: 1 in s.status).status[1] == 200
        h.send(h.data(1, h.ws_text("bye")))
        assert h.read_until(lambda s: b"bye" in s.data.get(1, b"")).goaway is None
        h.send(h.data(1, end=True))  # the client's FIN: the backend closes, ending our half
        seen = h.read_until(lambda s: 1 in s.ended)
        assert 1 in seen.ended
        assert h.ended_with() == 0  # idle: GOAWAY NO_ERROR


def test_stop_sends_goaway_and_open_streams_finish(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--h2c", "--drain-timeout", "10")
    with Hostile(proxy.port) as h:
        h.send(
            h.headers(
                1, h.block("/slow", "POST", extra=[("content-length", "4")]), end_stream=False
            )
        )
        h.send(h.data(1, b"ab"))
        assert h.alive()
        os.kill(proxy.proc.pid, signal.SIGTERM)  # type: ignore[attr-defined]
        seen = h.read_until(lambda s: s.goaway is not None)
        assert seen.goaway is not None and seen.goaway.error_code == 0
        assert seen.goaway.last_stream_id == 1
        h.send(h.request(3, "/late"))  # above the last stream id: refused
        h.send(h.data(1, b"cd", end=True))  # the open stream finishes
        seen = h.read_until(lambda s: 1 in s.ended)
        assert seen.status[1] == 200


def test_websocket_stream_gets_1001_at_the_drain_deadline(
    procs: Procs, three: dict[str, str]
) -> None:
    proxy = start_proxy(procs, three, "--h2c", "--drain-timeout", "0.5")
    with Hostile(proxy.port) as h:
        h.send(h.websocket(1))
        assert h.read_until(lambda s: 1 in s.status).status[1] == 200
        h.send(h.data(1, h.ws_text("hi")))
        assert h.read_until(lambda s: b"hi" in s.data.get(1, b"")).data[1].endswith(b": hi")
        os.kill(proxy.proc.pid, signal.SIGTERM)  # type: ignore[attr-defined]
        seen = h.read_until(lambda s: s.eof, timeout=15)
        assert seen.data[1].endswith(b"\x88\x02\x03\xe9")  # close, 1001 going away
        assert seen.goaway is not None and seen.goaway.error_code == 0


def test_a_hot_reload_keeps_h2_connections_and_their_websockets(
    procs: Procs, three: dict[str, str]
) -> None:
    from tests.integration.proxy.test_reload import wait_for_ids, write

    config = procs.tmp / "proxy.yaml"
    write(config, {"alpha": three["alpha"]})
    proxy = start_proxy(procs, {}, "--config", str(config), "--h2c")
    with Hostile(proxy.port) as h:
        h.send(h.websocket(1))
        assert h.read_until(lambda s: 1 in s.status).status[1] == 200
        write(config, {"alpha": three["alpha"], "beta": three["beta"]})
        os.kill(proxy.proc.pid, signal.SIGHUP)  # type: ignore[attr-defined]
        wait_for_ids(proxy, {"alpha", "beta"})  # the reload happened
        h.send(h.request(3, "/after"))  # the same connection takes a new stream...
        assert h.read_until(lambda s: 3 in s.ended).status[3] == 200
        h.send(h.data(1, h.ws_text("still here")))  # ...and its WebSocket carries on
        seen = h.read_until(lambda s: b"still here" in s.data.get(1, b""))
        assert seen.data[1].endswith(b"alpha: still here") and seen.goaway is None
