"""The config file end to end (routes to pools, bad config refused before listening) and the
L4 (TCP) mode."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs, free_port, limpet_env


def run_limpet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limpet", *args],
        env=limpet_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_config_exits_before_listening_naming_key_and_line(procs: Procs) -> None:
    bad = procs.tmp / "bad.yaml"
    bad.write_text(
        "pools:\n  web:\n    backends: [127.0.0.1:1]\n    affinity:\n      mode: sticky\n"
    )
    port = free_port()
    result = run_limpet("proxy", "--config", str(bad), "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"{bad}:5: pools.web.affinity.mode:" in result.stderr
    assert "Traceback" not in result.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "nothing may listen after a bad config"


def test_usage_errors_are_clear() -> None:
    for args, text in [
        (["proxy"], "no backends"),
        (["proxy", "--backend", "a=ftp://x:1"], "expected http://HOST:PORT"),
        (["proxy", "--backend", "127.0.0.1:1", "--affinity", "sticky"], "--affinity 'sticky'"),
        (["proxy", "--config", "/nonexistent.yaml"], "cannot read config file"),
        (
            ["proxy", "--backend", "127.0.0.1:1", "--mode", "tcp", "--affinity", "cookie"],
            "tcp mode",
        ),
    ]:
        result = run_limpet(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert text in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_routes_send_hosts_and_paths_to_their_pools(procs: Procs) -> None:
    web = procs.whoami("web-1")
    api = procs.whoami("api-1")
    port = free_port()
    config = procs.tmp / "routes.yaml"
    config.write_text(
        f"""\
listeners: ["127.0.0.1:{port}"]
pools:
  web: {{backends: ["{web}"]}}
  api: {{backends: ["{api}"], affinity: {{mode: none}}}}
routes:
  - {{host: api.example.test, pool: api}}
  - {{path: /api/, pool: api}}
  - {{pool: web}}
"""
    )
    procs.limpet("proxy", "--config", str(config), "--secret", "s", wait_for=("127.0.0.1", port))
    client = Client(f"http://127.0.0.1:{port}", jar=False)
    assert client.backend("/", headers={"Host": "api.example.test"}) == "api-1"
    assert client.backend("/", headers={"Host": "API.example.test:8080"}) == "api-1"
    assert client.backend("/api/x", headers={"Host": "www.example.test"}) == "api-1"
    assert client.backend("/", headers={"Host": "www.example.test"}) == "web-1"


def tcp_backend(port: int, source: str) -> str:
    """One HTTP request over a raw TCP connection through the L4 proxy."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    assert b"Via: 1.1 limpet" not in head, "L4 mode must not touch the bytes"
    return body.decode().splitlines()[0]


SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


def test_tcp_mode_client_ip_affinity(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--mode", "tcp", admin=False)
    chosen = {}
    for source in SOURCES:
        seen = Counter(tcp_backend(proxy.port, source) for _ in range(5))
        assert len(seen) == 1, (source, seen)
        chosen[source] = next(iter(seen))
    assert len(set(chosen.values())) > 1


def test_twin_tcp_mode_without_affinity_spreads(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--mode", "tcp", "--affinity", "none", admin=False)
    seen = Counter(tcp_backend(proxy.port, "127.0.0.2") for _ in range(9))
    assert len(seen) > 1


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_limpet(
            "proxy", "--backend", "127.0.0.1:1", "--listen", f"127.0.0.1:{port}", "--secret", "x"
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_backend_weights_share_new_sessions(procs: Procs) -> None:
    heavy, light = procs.whoami("heavy"), procs.whoami("light")
    port = free_port()
    config = procs.tmp / "weights.yaml"
    config.write_text(
        f'listeners: ["127.0.0.1:{port}"]\n'
        "pools:\n  web:\n    affinity: {mode: none}\n    backends:\n"
        f"      - {{id: heavy, url: '{heavy}', weight: 3}}\n"
        f"      - {{id: light, url: '{light}'}}\n"
    )
    procs.limpet("proxy", "--config", str(config), "--secret", "s", wait_for=("127.0.0.1", port))
    client = Client(f"http://127.0.0.1:{port}", jar=False)
    assert Counter(client.backend() for _ in range(40)) == {"heavy": 30, "light": 10}
