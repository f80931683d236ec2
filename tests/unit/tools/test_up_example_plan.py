"""`limpet up --example chat` plans the app beside the hubs and routes the proxy to both."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from limpet.config.load import parse_config
from limpet.errors import UsageError
from limpet.tools import up
from tests.unit.tools.test_up_plan import args


def facts(examples: Path | None = Path("/src/examples")) -> up.Facts:
    ports = itertools.count(9001)
    return up.Facts(
        python="/py", redis_server="/usr/bin/redis-server", has_hub=True, has_proxy=True,
        ports=lambda host: next(ports), scratch=lambda: "/tmp/x", examples=examples,
        token=lambda: "t0k",
    )  # fmt: skip


def test_the_chat_example_plan() -> None:
    plan = up.plan(args("--example", "chat", "--replicas", "2"), facts())
    assert [c.name for c in plan.children] == ["redis", "hub-1", "hub-2", "chat-app", "proxy"]
    hub = plan.children[1]
    assert "--hook-url" in hub.argv and "http://127.0.0.1:9002/hooks" in hub.argv
    assert "--events-url" in hub.argv and "/src/examples/chat/hub.yaml" in hub.argv
    app = plan.children[3]
    assert app.argv[1] == "/src/examples/chat/app.py" and app.port == 9002
    proxy = plan.children[-1]
    assert "--backend" not in proxy.argv and "/tmp/x/proxy.yaml" in proxy.argv
    files = {path: (text, mode) for path, text, mode in plan.files}
    assert files["/tmp/x/hook-secret"] == ("t0k\n", 0o600)
    config = parse_config(files["/tmp/x/proxy.yaml"][0])
    assert [(r.path, r.pool) for r in config.routes] == [
        ("/socket.io/", "hubs"), ("/static/", "hubs"), ("/healthz", "hubs"), ("/", "app"),
    ]  # fmt: skip
    assert yaml.safe_load(files["/tmp/x/proxy.yaml"][0])["pools"]["hubs"]["affinity"] == {
        "mode": "cookie"
    }
    assert any("sign in" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("argv", "f", "message"),
    [
        (["--example", "chat", "--backend-kind", "whoami"], facts(), "needs hub replicas"),
        (["--example", "chat"], facts(examples=None), "part of the source checkout"),
    ],
)
def test_what_cannot_work_is_refused(argv: list[str], f: up.Facts, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        up.plan(args(*argv), f)
