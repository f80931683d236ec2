"""`limpet up --broker redis+cluster|nats-cluster`: the plan of a local broker cluster."""

from __future__ import annotations

import itertools

import pytest

from limpet.errors import UsageError
from limpet.tools import up
from tests.unit.tools.test_up_plan import args


def facts(*, cli: bool = True, nats: bool = True) -> up.Facts:
    ports = itertools.count(9001)
    return up.Facts(
        python="/py",
        redis_server="/usr/bin/redis-server",
        has_hub=True,
        has_proxy=True,
        ports=lambda host: next(ports),
        redis_cli="/usr/bin/redis-cli" if cli else None,
        nats_server="/bin/nats-server" if nats else None,
        scratch=lambda: "/scratch",
    )


def test_redis_cluster_plan_six_nodes_a_create_step_and_hubs_on_the_cluster_url() -> None:
    plan = up.plan(args("--broker", "redis+cluster"), facts())
    brokers = [c for c in plan.children if c.role == "broker"]
    assert [c.name for c in brokers] == [f"redis-{i}" for i in range(1, 7)]
    assert all("--cluster-enabled" in c.argv for c in brokers)
    (create,) = plan.setup
    assert create[:3] == ("/usr/bin/redis-cli", "--cluster", "create")
    assert create[-3:] == ("--cluster-replicas", "1", "--cluster-yes")
    assert plan.broker is not None and plan.broker.startswith("redis+cluster://")
    hubs = [c for c in plan.children if c.role == "backend"]
    assert all(h.argv[h.argv.index("--broker") + 1] == plan.broker for h in hubs)
    assert plan.ready == "redis-cluster" and len(plan.ready_ports) == 6
    assert plan.stages[0] == brokers


def test_nats_cluster_plan_three_routed_jetstream_servers() -> None:
    plan = up.plan(args("--broker", "nats-cluster"), facts())
    brokers = [c for c in plan.children if c.role == "broker"]
    assert len(brokers) == 3 and all("-js" in c.argv and "--routes" in c.argv for c in brokers)
    assert all(c.url.startswith("nats://") for c in brokers)
    assert plan.broker == "nats://" + ",".join(f"127.0.0.1:{c.port}" for c in brokers)
    assert plan.ready == "nats-cluster" and plan.setup == ()


@pytest.mark.parametrize(
    ("argv", "f", "message"),
    [
        (["--broker", "redis+cluster"], facts(cli=False), "redis-cli"),
        (["--broker", "nats-cluster"], facts(nats=False), "nats-server"),
        (["--broker", "nats-cluster", "--backend-kind", "whoami"], facts(), "hub replicas"),
        (["--broker", "redis+sentinel://h:1"], facts(), "MASTER_NAME"),
    ],
)
def test_what_cannot_work_is_refused(argv: list[str], f: up.Facts, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        up.plan(args(*argv), f)


def test_a_cluster_url_is_passed_through() -> None:
    url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
    plan = up.plan(args("--broker", url), facts())
    assert plan.broker == url and not [c for c in plan.children if c.role == "broker"]
