"""One admin for ``--workers N``: /status lists every worker, metrics are summed, drain
reaches all of them (each worker has an internal admin socket; worker 0 fans out)."""

from __future__ import annotations

import re
import time

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs


def wait_workers(proxy: object, n: int) -> dict:
    deadline = time.monotonic() + 15
    while True:
        status = proxy.status()  # type: ignore[attr-defined]
        workers = status.get("workers", [])
        if len(workers) == n and all("error" not in w for w in workers):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def served_by_workers(proxy: object, requests: int) -> int:
    """Requests over fresh connections (the kernel spreads them); the summed 2xx count."""
    for _ in range(requests):
        client = Client(proxy.url)  # type: ignore[attr-defined]
        client.get()
        client.close()
    text = proxy.metrics()  # type: ignore[attr-defined]
    return int(
        sum(
            float(v)
            for v in re.findall(r'limpet_responses_total\{[^}]*code="2xx"[^}]*\} (\S+)', text)
        )
    )


def test_status_lists_every_worker_and_metrics_are_summed(
    procs: Procs, three: dict[str, str]
) -> None:
    proxy = start_proxy(procs, three, "--workers", "3")
    status = wait_workers(proxy, 3)
    assert [w["worker"] for w in status["workers"]] == [0, 1, 2]
    assert len({w["pools"][0]["backends"][0]["address"] for w in status["workers"]}) == 1
    assert served_by_workers(proxy, 60) == 60  # every request counted, whichever worker served it
    per_worker = [w["totals"]["requests"] for w in proxy.status()["workers"]]
    assert sum(per_worker) == 60 and sum(1 for n in per_worker if n) >= 2, per_worker


def test_drain_reaches_every_worker(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--workers", "3")
    wait_workers(proxy, 3)
    code, body = proxy.admin("POST", "/backends/beta/drain")
    assert code == 200, body
    status = proxy.status()
    for worker in status["workers"]:
        states = {b["id"]: b["state"] for b in worker["pools"][0]["backends"]}
        assert states["beta"] == "draining", worker["worker"]
    # new sessions, over fresh connections to every worker, never land on the drained backend
    served = {Client(proxy.url).backend() for _ in range(30)}
    assert "beta" not in served and served == {"alpha", "gamma"}
