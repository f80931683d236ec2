"""`limpet up` decides what to start from its flags and the machine, before starting anything."""

from __future__ import annotations

import argparse
import itertools

import pytest

from limpet.errors import LimpetError, UsageError
from limpet.tools import up


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    up.configure(parser)
    return parser.parse_args(list(argv))


def facts(*, redis: bool = True, hub: bool = True, proxy: bool = True) -> up.Facts:
    ports = itertools.count(9001)
    return up.Facts(
        python="/py",
        redis_server="/usr/bin/redis-server" if redis else None,
        has_hub=hub,
        has_proxy=proxy,
        ports=lambda host: next(ports),
    )


def names(plan: up.Plan) -> list[str]:
    return [c.name for c in plan.children]


def test_default_is_three_hubs_on_an_owned_redis_behind_the_proxy() -> None:
    plan = up.plan(args(), facts())
    assert names(plan) == ["redis", "hub-1", "hub-2", "hub-3", "proxy"]
    assert plan.backend_kind == "hub" and plan.broker == "redis://127.0.0.1:9001"
    redis, hub1, *_, proxy = plan.children
    assert redis.argv[:3] == ("/usr/bin/redis-server", "--port", "9001")
    assert hub1.argv == (
        "/py", "-m", "limpet", "hub", "--listen", "127.0.0.1:9002", "--name", "hub-1",
        "--broker", "redis://127.0.0.1:9001",
    )  # fmt: skip
    assert proxy.argv == (
        "/py", "-m", "limpet", "proxy", "--listen", "127.0.0.1:8080", "--affinity", "cookie",
        "--backend", "hub-1=http://127.0.0.1:9002", "--backend", "hub-2=http://127.0.0.1:9003",
        "--backend", "hub-3=http://127.0.0.1:9004", "--admin", "127.0.0.1:8081",
    )  # fmt: skip
    assert [[c.name for c in s] for s in plan.stages] == [
        ["redis"],
        ["hub-1", "hub-2", "hub-3"],
        ["proxy"],
    ]
    assert any("memory broker cannot be shared" in n for n in plan.notes)
    assert plan.proxy_url == "http://127.0.0.1:8080/"


def test_memory_broker_without_redis_falls_back_to_whoami() -> None:
    plan = up.plan(args(), facts(redis=False))
    assert names(plan) == ["whoami-1", "whoami-2", "whoami-3", "proxy"]
    assert plan.backend_kind == "whoami" and plan.broker is None
    assert any("redis-server is not installed" in n for n in plan.notes)


def test_one_hub_keeps_the_memory_broker() -> None:
    plan = up.plan(args("--replicas", "1"), facts())
    assert names(plan) == ["hub-1", "proxy"]
    assert plan.children[0].argv[-2:] == ("--broker", "memory")


def test_given_broker_is_passed_through_and_no_redis_started() -> None:
    plan = up.plan(args("--broker", "nats://127.0.0.1:4222"), facts(redis=False))
    assert "redis" not in names(plan)
    assert all(c.argv[-1] == "nats://127.0.0.1:4222" for c in plan.children if c.role == "backend")


def test_missing_hub_falls_back_to_whoami_and_says_so() -> None:
    plan = up.plan(args(), facts(hub=False))
    assert plan.backend_kind == "whoami" and "redis" not in names(plan)
    assert any("`limpet hub` is not part" in n for n in plan.notes)


def test_whoami_kind_flags() -> None:
    plan = up.plan(
        args(
            "--backend-kind", "whoami", "--replicas", "2", "--affinity", "none",
            "--listen", "127.0.0.1:7000", "--admin", "off",
        ),
        facts(),
    )  # fmt: skip
    assert names(plan) == ["whoami-1", "whoami-2", "proxy"]
    proxy = plan.children[-1]
    assert "--admin" not in proxy.argv and proxy.argv[6:8] == ("--affinity", "none")
    assert plan.admin is None and plan.proxy_url == "http://127.0.0.1:7000/"
    assert not plan.notes


def test_wildcard_listen_is_checked_on_loopback() -> None:
    proxy = up.plan(args("--listen", "0.0.0.0:8088"), facts()).children[-1]
    assert (proxy.host, proxy.port) == ("127.0.0.1", 8088)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replicas", "0"], "--replicas"),
        (["--broker", "kafka://x"], "--broker"),
        (["--listen", "localhost:http"], "numeric port"),
        (["--admin", "nope"], "HOST:PORT"),
    ],
)
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        up.plan(args(*argv), facts())


def test_no_proxy_is_a_clear_error() -> None:
    with pytest.raises(LimpetError, match="needs `limpet proxy`"):
        up.plan(args(), facts(proxy=False))


def test_banner_names_every_child_and_the_urls() -> None:
    plan = up.plan(args(), facts())
    text = "\n".join(up.banner(plan, {"proxy": 42}))
    assert "open http://127.0.0.1:8080/  (chat page" in text
    assert "admin http://127.0.0.1:8081/status" in text
    assert "limpet check http://127.0.0.1:8080/healthz --identify json:name" in text
    assert "limpet check http://127.0.0.1:8080/ --transport socketio" in text
    assert "proxy      http://127.0.0.1:8080 pid 42" in text
    assert "redis      redis://127.0.0.1:9001" in text


def test_the_banners_check_command_runs_in_a_new_shell() -> None:
    # a new shell has not activated the virtual environment (scripts/demo never does)
    import os
    import shutil
    import subprocess
    import sys

    if sys.prefix == sys.base_prefix:
        pytest.skip("limpet is not installed in a virtual environment here")
    plan = up.plan(args(), facts())
    line = next(x for x in up.banner(plan) if "check:" in x)
    command = line.split("check: ", 1)[1].split(" check ", 1)[0]
    new_shell = "/usr/bin:/bin"
    assert os.path.isabs(command), command
    done = subprocess.run(
        [command, "check", "--help"],
        env={"PATH": new_shell, "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # twin: the bare name the banner printed before is not found by a new shell
    assert shutil.which("limpet", path=new_shell) is None
