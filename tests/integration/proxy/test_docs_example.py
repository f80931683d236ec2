"""The config example of docs/proxy.md, as written, is accepted and runs.

Only its addresses are moved to free loopback ports (fixed ports would collide on a shared
machine); every backend it names is a real whoami, and each listener is exercised.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.integration.proxy.conftest import Client
from tests.support.procs import ROOT, Procs, free_port, wait_listening
from tests.support.rawhttp import recv_head

DOC = ROOT / "docs" / "proxy.md"


def config_example() -> str:
    text = DOC.read_text()
    section = text[text.index("## Config file") :]
    return section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 8)]


def test_the_example_is_valid_as_written() -> None:
    from limpet.config.load import finish, parse_config

    cfg = finish(parse_config(config_example(), str(DOC)))
    assert {p.name for p in cfg.pools} == {"web", "api", "game"}
    tcp = [lc for lc in cfg.listeners if lc.mode == "tcp"]
    assert tcp and cfg.tcp_pool(tcp[0]) == "game"


def test_the_example_runs(procs: Procs) -> None:
    example = config_example()
    ports = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", example)))
    moved = {p: str(free_port()) for p in ports}
    text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{moved[m.group(1)]}", example)
    backend_ports = {
        "9001": "web-a",
        "9002": "web-b",
        "9101": "api",
        "9201": "game-a",
        "9202": "game-b",
    }
    for port, name in backend_ports.items():
        procs.whoami(name, "127.0.0.1", int(moved[port]), "--no-socketio")
    config = Path(procs.tmp / "proxy.yaml")
    config.write_text(text)
    proc = procs.limpet(
        "proxy", "--config", str(config), wait_for=("127.0.0.1", int(moved["8080"]))
    )
    wait_listening("127.0.0.1", int(moved["9000"]), proc=proc)
    wait_listening("127.0.0.1", int(moved["9100"]), proc=proc)
    http = Client(f"http://127.0.0.1:{moved['8080']}")
    assert http.backend("/", {"Host": "www.example.com"}) in ("web-a", "web-b")
    assert http.backend("/", {"Host": "api.example.com", "X-User": "u1"}) == "api"
    assert http.backend("/api/x", {"Host": "www.example.com", "X-User": "u1"}) == "api"
    # the tcp listener relays bytes to its own pool
    with socket.create_connection(("127.0.0.1", int(moved["9000"])), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, rest = recv_head(s)
        while chunk := s.recv(4096):
            rest += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    assert rest.splitlines()[0] in (b"game-a", b"game-b")


def test_twin_without_its_own_pool_the_tcp_listener_is_refused(tmp_path: Path) -> None:
    """What the example said before: the tcp listener served the first route's (hash) pool."""
    import argparse

    import pytest

    from limpet.errors import ConfigError
    from limpet.proxy.cli import configure, resolve

    example = config_example().replace(", pool: game}", "}")
    path = tmp_path / "example-without-pool.yaml"
    path.write_text(example)
    parser = argparse.ArgumentParser()
    configure(parser)
    with pytest.raises(ConfigError, match="tcp mode supports affinity none or client-ip"):
        resolve(parser.parse_args(["--config", str(path)]))
