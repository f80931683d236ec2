"""`limpet up --broker redis+cluster`: a real local Redis Cluster behind the hubs, stopped whole."""

from __future__ import annotations

import json
import urllib.request

from tests.integration.tools.test_up import all_gone, start_up
from tests.support.procs import Procs, which_or_skip


def test_up_with_a_local_redis_cluster(procs: Procs) -> None:
    which_or_skip("redis-server", "/usr/bin/redis-server")
    which_or_skip("redis-cli", "/usr/bin/redis-cli")
    proc, port, _, pids = start_up(procs, "--broker", "redis+cluster", "--replicas", "2")
    assert sorted(n for n in pids if n.startswith("redis-")) == [f"redis-{i}" for i in range(1, 7)]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/channels/demo/messages",
        data=json.dumps({"data": "hi"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 201 and json.load(r)["offset"] == 1
    assert "(broker redis-cluster)" in procs.output(proc)
    procs.kill(proc, 15)
    assert all_gone(list(pids.values()))
