"""The `limpet proxy` process follows discovery: a real DNS server process (dnspython) and the
loopback Kubernetes API server (real list/watch protocol) change the pool of real `limpet whoami`
backends; sessions drain and repin as endpoints change. Each with its twin: a static pool keeps
sending sessions where discovery no longer would."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration.discovery.fake_apiserver import (
    DRAINING,
    READY,
    FakeApiServer,
    endpoint_slice,
    put_gke_service,
)
from tests.integration.discovery.test_dns import Zone
from tests.integration.proxy.conftest import Client, Proxy, start_proxy
from tests.support.procs import Procs, free_port, limpet_env

T = TypeVar("T")
NAME = "chat.web.svc.cluster.local."
HOSTS = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """Three whoami backends, a, b and c, on 127.0.0.2-4 and one port (as pods of a Service)."""
    owner = Procs()
    try:
        for _ in range(20):
            port = free_port("127.0.0.2")
            try:
                for name, host in HOSTS.items():
                    owner.whoami(name, host, port)
                break
            except RuntimeError:  # the port was taken on another address: try another
                owner.close()
                owner = Procs()
        yield port
    finally:
        owner.close()


def eventually(what: str, check: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll ``check`` until it returns something truthy (the proxy applies changes async)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def members(proxy: Proxy) -> dict[str, str]:
    """Backend id -> state, as the proxy's /status shows it."""
    pool = proxy.status()["pools"][0]
    return {b["id"]: b["state"] for b in pool["backends"]}


def pinned_to(proxy: Proxy, backend: str, tries: int = 30) -> Client:
    """A fresh client whose session landed on ``backend``."""
    for _ in range(tries):
        client = Client(proxy.url)
        if client.backend() == backend:
            return client
        client.close()
    raise AssertionError(f"no fresh session landed on {backend}")


def fresh(proxy: Proxy, n: int = 12) -> set[str]:
    """Where ``n`` new sessions land."""
    seen = set()
    for _ in range(n):
        client = Client(proxy.url)
        seen.add(client.backend())
        client.close()
    return seen


# -- DNS -----------------------------------------------------------------------------------------


def test_dns_records_join_and_leave(procs: Procs, port: int) -> None:
    zone = Zone(procs)  # the real DNS server process, empty for now
    proxy = start_proxy(procs, {}, "--backend", f"dns://{NAME}:{port}", "--dns-nameserver",
                        f"127.0.0.1:{zone.port}", "--dns-interval", "0.1")  # fmt: skip
    status, body, _ = Client(proxy.url).get()
    assert status == 503 and "no healthy backend" in body  # nothing yet: 503, not a crash
    pool = proxy.status()["pools"][0]
    assert pool["backends"] == [] and pool["discovery"]["source"].startswith("dns")

    zone.write({NAME: {"A": [HOSTS["a"], HOSTS["b"]]}})
    a, b, c = (f"{HOSTS[n]}:{port}" for n in "abc")
    eventually("a and b join", lambda: members(proxy) == {a: "healthy", b: "healthy"})
    twin = start_proxy(procs, {n: f"http://{HOSTS[n]}:{port}" for n in "ab"})  # a static pool
    assert fresh(proxy) == {"a", "b"}
    session, twin_session = pinned_to(proxy, "a"), pinned_to(twin, "a")

    # a record is added: the new backend receives new sessions; pinned ones stay
    zone.write({NAME: {"A": [HOSTS["a"], HOSTS["b"], HOSTS["c"]]}})
    eventually("c joins", lambda: c in members(proxy))
    assert "c" in fresh(proxy)
    assert session.backend() == "a"
    assert "c" not in fresh(twin)  # twin: a static pool never learns of c

    # a's record is removed: its session repins, with a new cookie in the same response
    zone.write({NAME: {"A": [HOSTS["b"], HOSTS["c"]]}})
    eventually("a leaves", lambda: a not in members(proxy))
    before = dict(session.cookies)
    status, body, resp = session.get()
    assert status == 200 and body.splitlines()[0] in ("b", "c")
    assert resp.headers.get("Set-Cookie") and session.cookies != before
    assert session.backend() == body.splitlines()[0]  # the new pin holds
    assert twin_session.backend() == "a"  # twin: the static pool keeps sending it to a
    pool = proxy.status()["pools"][0]
    assert [e["id"] for e in pool["discovery"]["endpoints"]] == [b, c]


def test_dns_srv_from_the_config_file(procs: Procs, port: int) -> None:
    zone = Zone(procs)
    srv = "_http._tcp." + NAME
    zone.write(
        {
            srv: {"SRV": [[0, 0, port, "b." + NAME], [0, 0, port, "c." + NAME]]},
            "b." + NAME: {"A": [HOSTS["b"]]},
            "c." + NAME: {"A": [HOSTS["c"]]},
        }
    )
    config = procs.tmp / "proxy.yaml"
    config.write_text(
        "pools:\n"
        "  chat:\n"
        "    affinity: {mode: cookie, cookie-name: chat}\n"
        "    discovery:\n"
        f"      dns: {{name: '{srv}', record: SRV, interval: 0.1,"
        f" nameserver: '127.0.0.1:{zone.port}'}}\n"
    )
    proxy = start_proxy(procs, {}, "--config", str(config))
    want = {"b." + NAME.rstrip("."): "healthy", "c." + NAME.rstrip("."): "healthy"}
    eventually("the SRV targets join", lambda: members(proxy) == want)
    client = Client(proxy.url)
    first = client.backend()
    assert "chat" in client.cookies and all(client.backend() == first for _ in range(5))


# -- Kubernetes ----------------------------------------------------------------------------------


class ApiServer:
    """The fake API server on a loop of its own, so the test drives it while it serves."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeApiServer = self.call(self._start())

    async def _start(self) -> FakeApiServer:
        fake = FakeApiServer()
        await fake.start()
        return fake

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def pods(self, port: int, pods: list[tuple[str, dict[str, bool]]]) -> None:
        slice_ = endpoint_slice("chat", "chat-x", port, [(p, HOSTS[p], c) for p, c in pods])
        self.call(self.fake.put(slice_))

    def close(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, str]]:
    server = ApiServer()
    put_gke_service(server.fake.objects, {"ports": [{"port": 80}]})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(server.fake.kubeconfig())
    try:
        yield server, str(kubeconfig)
    finally:
        server.close()


def test_kubernetes_service_affinity_drain_and_delete(
    procs: Procs, port: int, api: tuple[ApiServer, str]
) -> None:
    server, kubeconfig = api
    server.pods(port, [("a", READY), ("b", READY)])
    proxy = start_proxy(procs, {}, "--kubernetes-service", "default/chat", "--kubeconfig",
                        kubeconfig, "--log-level", "info")  # fmt: skip
    eventually("a and b join", lambda: members(proxy) == {"a": "healthy", "b": "healthy"})
    # the BackendConfig's GENERATED_COOKIE became limpet's cookie affinity, and the log says so
    log = procs.output(proxy.proc)  # type: ignore[arg-type]
    assert "derived affinity cookie name=GCLB ttl=600" in log and "affinity from gke" in log
    session = pinned_to(proxy, "a")
    assert set(session.cookies) == {"GCLB"}
    twin = start_proxy(procs, {n: f"http://{HOSTS[n]}:{port}" for n in "ab"})  # a static pool
    twin_session = pinned_to(twin, "a")
    assert set(twin_session.cookies) == {"limpet"}  # twin: without the Service, limpet's default

    # a starts terminating: its pinned session stays, new sessions go elsewhere
    server.pods(port, [("a", DRAINING), ("b", READY)])
    eventually("a drains", lambda: members(proxy) == {"a": "draining", "b": "healthy"})
    assert session.backend() == "a"
    assert fresh(proxy) == {"b"}
    assert "a" in fresh(twin)  # twin: the static pool still gives the terminating pod sessions

    # a is deleted: its session repins with a new cookie, and stays there
    server.pods(port, [("b", READY)])
    eventually("a leaves", lambda: members(proxy) == {"b": "healthy"})
    before = dict(session.cookies)
    status, body, resp = session.get()
    assert status == 200 and body.splitlines()[0] == "b"
    assert "GCLB=" in (resp.headers.get("Set-Cookie") or "") and session.cookies != before
    assert session.backend() == "b"
    assert twin_session.backend() == "a"  # twin: the static pool keeps sending it to a

    pool = proxy.status()["pools"][0]
    assert pool["affinity"] == "cookie" and pool["discovery"]["source"].startswith("kubernetes")
    assert [e["id"] for e in pool["discovery"]["endpoints"]] == ["b"]


def test_explicit_flags_win_over_the_service(
    procs: Procs, port: int, api: tuple[ApiServer, str]
) -> None:
    server, kubeconfig = api
    server.pods(port, [("a", READY)])
    proxy = start_proxy(procs, {}, "--kubernetes-service", "default/chat", "--kubeconfig",
                        kubeconfig, "--cookie-name", "mine")  # fmt: skip
    eventually("a joins", lambda: members(proxy) == {"a": "healthy"})
    client = Client(proxy.url)
    client.backend()
    assert set(client.cookies) == {"mine"}
    assert "Max-Age=600" in (Client(proxy.url).get()[2].headers.get("Set-Cookie") or "")


def limpet_proxy_fails(*args: str) -> str:
    """Run a proxy that must refuse to start; return its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "limpet", "proxy", "--listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=limpet_env(),
    )
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_clear_errors(api: tuple[ApiServer, str], tmp_path: Path) -> None:
    server, kubeconfig = api
    err = limpet_proxy_fails("--kubernetes-service", "default/missing", "--kubeconfig", kubeconfig)
    assert "reading Service default/missing: 404" in err
    assert "expected a Service as NAMESPACE/NAME" in limpet_proxy_fails(
        "--kubernetes-service", "a/b/c", "--kubeconfig", kubeconfig
    )
    closed = json.loads(server.fake.kubeconfig())
    closed["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"
    unreachable = tmp_path / "unreachable"
    unreachable.write_text(json.dumps(closed))
    err = limpet_proxy_fails(
        "--kubernetes-service", "default/chat", "--kubeconfig", str(unreachable)
    )
    assert "Kubernetes API unreachable" in err
    assert "dns://NAME:PORT" in limpet_proxy_fails("--backend", "dns://no-port")


def test_api_errors_after_start_are_logged_and_retried(
    procs: Procs, port: int, api: tuple[ApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    server.pods(port, [("a", READY)])
    wrong = json.loads(server.fake.kubeconfig())
    wrong["users"][0]["user"]["token"] = "wrong"  # the Service reads, the EndpointSlices refuse
    path = tmp_path / "wrong-token"
    path.write_text(json.dumps(wrong))
    proxy = start_proxy(procs, {}, "--kubernetes-service", "default/chat", "--kubeconfig",
                        str(path))  # fmt: skip
    error = eventually(
        "the discovery error in /status",
        lambda: proxy.status()["pools"][0]["discovery"].get("error"),
    )
    assert "401" in error and "EndpointSlices of default/chat" in error
    assert Client(proxy.url).get()[0] == 503  # no members yet: 503, and the proxy lives on
    procs.kill(proxy.proc, signal.SIGTERM)  # type: ignore[arg-type]
    assert proxy.proc.returncode == 0  # type: ignore[attr-defined]
    log = procs.output(proxy.proc)  # type: ignore[arg-type]
    assert "discovery from kubernetes EndpointSlices of default/chat failed" in log
    assert "Traceback" not in log
