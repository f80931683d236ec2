"""Engine.IO v4 spoken by hand through `limpet proxy --affinity engineio` to real backends.

Byte-level checks the JavaScript client cannot show: the token in the open packet, a correct
Content-Length, the backend's own sid upstream, the exact 400 for unknown sessions, and two proxy
replicas sharing one secret (with the twin that does not).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.procs import Procs, free_port

SECRET = "raw-engineio-secret"
TOKEN = re.compile(r"(?P<sid>[A-Za-z0-9._~-]+)\.(?P<tag>[A-Za-z0-9_-]{11})\.[A-Za-z0-9_-]{22}")
SESSION_UNKNOWN = b'{"code":1,"message":"Session ID unknown"}'


@pytest.fixture
def procs(procs: Procs) -> Iterator[Procs]:
    """The shared ``procs``, but proxies are killed first at the end: a proxy waits out its
    shutdown drain after Engine.IO sessions, which would add seconds to every test."""
    yield procs
    for proxy in PROXIES.pop(id(procs), []):
        procs.kill(proxy)


PROXIES: dict[int, list[Any]] = {}


def start_proxy(procs: Procs, backends: dict[str, str], secret: str = SECRET) -> int:
    port = free_port()
    argv = ["proxy", "--listen", f"127.0.0.1:{port}", "--affinity", "engineio", "--secret", secret]
    for name, url in backends.items():
        argv += ["--backend", f"{name}={url}"]
    PROXIES.setdefault(id(procs), []).append(procs.limpet(*argv, wait_for=("127.0.0.1", port)))
    return port


def request(
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def handshake(port: int) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = request(port, "GET", "/socket.io/?EIO=4&transport=polling&t=a")
    assert status == 200, body
    assert int(headers["content-length"]) == len(body)
    packet = body.split(b"\x1e")[0]
    assert packet[:1] == b"0"
    return json.loads(packet[1:])["sid"], headers, body


def poll(port: int, sid: str) -> list[str]:
    status, _, body = request(port, "GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
    assert status == 200, body
    return body.decode().split("\x1e")


def send(port: int, sid: str, *packets: str) -> tuple[int, bytes]:
    status, _, body = request(
        port,
        "POST",
        f"/socket.io/?EIO=4&transport=polling&sid={sid}",
        body="\x1e".join(packets).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    return status, body


def whoami_of(packets: list[str]) -> str | None:
    for packet in packets:
        if packet.startswith('42["whoami"'):
            name: str = json.loads(packet[2:])[1]["name"]
            return name
    return None


@pytest.fixture
def backends(procs: Procs) -> dict[str, str]:
    return {name: procs.whoami(name) for name in "abc"}


def test_handshake_hands_out_a_token_and_the_backend_sees_its_own_sid(
    procs: Procs, backends: dict[str, str]
) -> None:
    port = start_proxy(procs, backends)
    token, _, _ = handshake(port)
    match = TOKEN.fullmatch(token)
    assert match, token
    # the sid inside the token is the backend's own: exactly one backend knows it
    backend_sid = match["sid"]
    direct = [int(url.rsplit(":", 1)[1]) for url in backends.values()]
    answers = [send(p, backend_sid, "40")[0] for p in direct]
    assert sorted(answers) == [200, 400, 400]
    owner = direct[answers.index(200)]
    # and through the proxy, with the token, the session carries on on that backend
    packets = poll(port, token)
    name = whoami_of(packets) or whoami_of(poll(port, token))
    assert name in backends
    assert backends[name].endswith(f":{owner}")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # tampered mac
        lambda t: t.split(".")[0],  # the bare backend sid
        lambda t: "nonsense",
        lambda t: f"{t}&sid={t}",  # two sids: refused, not guessed
    ],
    ids=["tampered", "bare-sid", "garbage", "duplicate"],
)
def test_unknown_sessions_get_socketio_s_own_400(
    procs: Procs, backends: dict[str, str], mangle: Any
) -> None:
    port = start_proxy(procs, backends)
    token, _, _ = handshake(port)
    for method in ("GET", "POST"):
        status, headers, body = request(
            port, method, f"/socket.io/?EIO=4&transport=polling&sid={mangle(token)}", body=b"40"
        )
        assert (status, headers["content-type"], body) == (400, "application/json", SESSION_UNKNOWN)
        assert int(headers["content-length"]) == len(body)


def connect(port: int, token: str) -> str:
    """Open the socket.io namespace on a session; the backend's name (it emits "whoami")."""
    assert send(port, token, "40") == (200, b"OK")
    for _ in range(3):
        name = whoami_of(poll(port, token))
        if name:
            return name
    raise AssertionError("no whoami event")


def test_session_of_a_killed_backend_gets_400_then_a_fresh_handshake_works(procs: Procs) -> None:
    port_a = free_port()
    victim = procs.limpet(
        "whoami", "--listen", f"127.0.0.1:{port_a}", "--name", "a", wait_for=("127.0.0.1", port_a)
    )
    backends = {"a": f"http://127.0.0.1:{port_a}", "b": procs.whoami("b")}
    port = start_proxy(procs, backends)
    tokens = [handshake(port)[0] for _ in range(2)]  # round robin: one session on each backend
    by_name = {connect(port, token): token for token in tokens}
    assert set(by_name) == {"a", "b"}
    procs.kill(victim)
    status, headers, body = request(
        port, "GET", f"/socket.io/?EIO=4&transport=polling&sid={by_name['a']}"
    )
    assert (status, headers["content-type"], body) == (400, "application/json", SESSION_UNKNOWN)
    assert connect(port, handshake(port)[0]) == "b"  # the reconnect lands on a live backend
    assert send(port, by_name["b"], "3") == (200, b"OK")  # b's session never noticed


def converse(first: int, second: int, rounds: int = 6) -> list[str]:
    """One session whose requests alternate between two proxies; the backend names it saw.

    Ends with an "error ..." entry at the first request that is not answered 200.
    """
    ports = (first, second)
    token, _, _ = handshake(first)
    names: list[str] = []
    status, body = send(second, token, "40")
    if status != 200:
        return [f"error {status} {body.decode()}"]
    for i in range(rounds):
        status, body = send(ports[i % 2], token, f'42{i}["echo",{{"i":{i}}}]')
        if status != 200:
            return [*names, f"error {status} {body.decode()}"]
        for _ in range(3):  # the ack may follow the connect and whoami packets
            status, _, body = request(
                ports[(i + 1) % 2], "GET", f"/socket.io/?EIO=4&transport=polling&sid={token}"
            )
            if status != 200:
                return [*names, f"error {status} {body.decode()}"]
            packets = body.decode().split("\x1e")
            name = whoami_of(packets)
            if name:
                names.append(name)
            acks = [p for p in packets if p.startswith(f"43{i}[")]
            if acks:
                names.append(json.loads(acks[0][len(f"43{i}") :])[0]["name"])
                break
    return names


def test_two_proxies_with_one_secret_route_a_session_alike(
    procs: Procs, backends: dict[str, str]
) -> None:
    p1, p2 = start_proxy(procs, backends), start_proxy(procs, backends)
    for _ in range(3):
        names = converse(p1, p2)
        assert len(names) == 7 and len(set(names)) == 1, names  # whoami + 6 acks, one backend


def test_twin_two_proxies_with_different_secrets_do_not(
    procs: Procs, backends: dict[str, str]
) -> None:
    p1, p2 = start_proxy(procs, backends), start_proxy(procs, backends, secret="other")
    names = converse(p1, p2)
    assert names and names[-1].startswith("error 400"), names
    assert SESSION_UNKNOWN.decode() in names[-1]


def test_websocket_only_handshake_through_the_proxy(procs: Procs, backends: dict[str, str]) -> None:
    """The open packet arrives in the first frame, rewritten; compression offered is declined."""
    import websockets

    port = start_proxy(procs, backends)

    async def session() -> tuple[str, str, str | None]:
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(url, compression="deflate") as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            opened = await asyncio.wait_for(ws.recv(), 5)
            await ws.send("40")
            name = ""
            while not name:
                msg = await asyncio.wait_for(ws.recv(), 5)
                assert isinstance(msg, str)
                if msg.startswith('42["whoami"'):
                    name = json.loads(msg[2:])[1]["name"]
            assert isinstance(opened, str)
            return opened, name, extensions

    opened, name, extensions = asyncio.run(session())
    assert opened.startswith("0{")
    assert TOKEN.fullmatch(json.loads(opened[1:])["sid"])
    assert name in backends
    assert extensions is None


def test_custom_engineio_path_from_the_config_file(procs: Procs) -> None:
    """``engineio-path`` in YAML: sessions on the server's custom path are pinned, others not."""
    urls = [procs.whoami(name, "127.0.0.1", None, "--socketio-path", "rt") for name in "ab"]
    port = free_port()
    config = procs.tmp / "engineio.yaml"
    config.write_text(
        f"secret: {SECRET}\n"
        f"listeners: [{{address: '127.0.0.1:{port}'}}]\n"
        "pools:\n"
        "  default:\n"
        f"    backends: [{urls[0]}, {urls[1]}]\n"
        "    affinity: {mode: engineio, engineio-path: /rt/}\n"
    )
    PROXIES.setdefault(id(procs), []).append(
        procs.limpet("proxy", "--config", str(config), wait_for=("127.0.0.1", port))
    )
    status, headers, body = request(port, "GET", "/rt/?EIO=4&transport=polling")
    assert status == 200 and int(headers["content-length"]) == len(body)
    token = json.loads(body.split(b"\x1e")[0][1:])["sid"]
    assert TOKEN.fullmatch(token), token
    for _ in range(4):  # round robin would have moved an unpinned session by now
        status, _, body = request(port, "POST", f"/rt/?EIO=4&transport=polling&sid={token}", b"3")
        assert (status, body) == (200, b"OK")
