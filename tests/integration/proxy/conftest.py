"""Helpers for proxy tests: start real whoami backends and a real `limpet proxy` in front."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.procs import Procs, free_port

SECRET = "test-secret-shared-by-replicas"
ADMIN_TOKEN = "test-admin-token"


@dataclass
class Proxy:
    host: str
    port: int
    admin_port: int | None
    proc: object
    backends: dict[str, str] = field(default_factory=dict)  # name -> URL

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def status(self) -> dict:
        assert self.admin_port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/status", timeout=5) as r:
            return json.loads(r.read())

    def admin(
        self, method: str, path: str, headers: dict[str, str] | None = None, token: bool = True
    ) -> tuple[int, str]:
        """An admin call, with the bearer token unless ``token=False``."""
        assert self.admin_port is not None
        hdrs = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if token else {}
        hdrs.update(headers or {})
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}", method=method, data=b"", headers=hdrs
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> str:
        assert self.admin_port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            return r.read().decode()


def start_proxy(
    procs: Procs,
    backends: dict[str, str],
    *extra: str,
    admin: bool = True,
    env: dict[str, str] | None = None,
    secret: str = SECRET,
) -> Proxy:
    port = free_port()
    admin_port = free_port() if admin else None
    args = ["proxy", "--listen", f"127.0.0.1:{port}", "--secret", secret, "--log-level", "warning"]
    for name, url in backends.items():
        args += ["--backend", f"{name}={url}"]
    if admin_port:
        args += ["--admin", f"127.0.0.1:{admin_port}"]
    args += list(extra)
    env = {"LIMPET_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    proc = procs.limpet(*args, wait_for=("127.0.0.1", port), env=env)
    if admin_port:
        from tests.support.procs import wait_listening

        wait_listening("127.0.0.1", admin_port, proc=proc)  # type: ignore[arg-type]
    return Proxy("127.0.0.1", port, admin_port, proc, dict(backends))


def start_backends(procs: Procs, *names: str) -> dict[str, str]:
    return {name: procs.whoami(name) for name in names}


class Client:
    """A keep-alive HTTP client with a cookie jar, optionally bound to a source address."""

    def __init__(self, url: str, source: str | None = None, jar: bool = True) -> None:
        hostport = url.split("://", 1)[1]
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host, int(port)
        self.source = source
        self.use_jar = jar
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(
                self.host,
                self.port,
                timeout=10,
                source_address=(self.source, 0) if self.source else None,
            )
        return self.conn

    def get(
        self, path: str = "/", headers: dict[str, str] | None = None
    ) -> tuple[int, str, http.client.HTTPResponse]:
        hdrs = dict(headers or {})
        if self.use_jar and self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = self._connection()
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read().decode()
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        if resp.headers.get("Connection", "").lower() == "close":
            self.close()
        return resp.status, body, resp

    def backend(self, path: str = "/", headers: dict[str, str] | None = None) -> str:
        status, body, _ = self.get(path, headers)
        assert status == 200, body
        return body.splitlines()[0]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def raw_exchange(port: int, data: bytes, *, timeout: float = 6.0, host: str = "127.0.0.1") -> bytes:
    """Send bytes on a fresh connection; read until the proxy closes it (or timeout)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return out + b"<EOF>"
            out += chunk
        return out


@pytest.fixture(scope="module", params=["compiled", "python"], autouse=True)
def wire_core(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every proxy test runs against both builds of the wire core: the compiled one and the
    pure-Python reference (LIMPET_NO_EXTENSIONS=1 in the proxy's environment)."""
    core = request.param
    if core == "compiled":
        from limpet.proxy.wire import compiled_core

        if compiled_core() is None:
            pytest.skip("the compiled wire core is not built (run scripts/bootstrap)")
    before = os.environ.get("LIMPET_NO_EXTENSIONS")
    if core == "python":
        os.environ["LIMPET_NO_EXTENSIONS"] = "1"
    else:
        os.environ.pop("LIMPET_NO_EXTENSIONS", None)
    try:
        yield core
    finally:
        if before is None:
            os.environ.pop("LIMPET_NO_EXTENSIONS", None)
        else:
            os.environ["LIMPET_NO_EXTENSIONS"] = before


@pytest.fixture(scope="module")
def three() -> Iterator[dict[str, str]]:
    """Three whoami backends shared by a module's tests (tests that kill one start their own)."""
    owner = Procs()
    try:
        yield start_backends(owner, "alpha", "beta", "gamma")
    finally:
        owner.close()
