"""I/O: what the admin shows and changes, for one process or fanned out over every worker.

``LocalView`` reads and drains the ``ProxyServer`` of this process. ``WorkersView`` is the
``--workers N`` case: every worker serves its ``LocalView`` on its own Unix socket (in a
directory only this user can enter), and the front admin (in worker 0) asks each of them and
merges the answers: metrics summed, ``/status`` listing every worker, drain/undrain/reload sent
to all. Plain HTTP over Unix sockets: the same handlers serve both, nothing new to parse, and a
worker that is gone shows as an error entry instead of hanging the page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from limpet.proxy.server import ProxyServer


def totals(server: ProxyServer) -> dict[str, int]:
    """Requests answered so far and how many were errors (5xx relayed or answered locally)."""
    requests = errors = 0
    for runtime in server.pools.values():
        for (_, cls), n in list(runtime.response_counts.items()):
            requests += n
            if cls == 5:
                errors += n
    for metric in server.metrics.local_responses.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                requests += int(sample.value)
                if str(sample.labels.get("code", "")).startswith("5"):
                    errors += int(sample.value)
    return {"requests": requests, "errors": errors}


class LocalView:
    """This process's proxy."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    async def status(self) -> dict[str, Any]:
        status = self.server.status()
        status["totals"] = totals(self.server)
        return status

    async def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.server.metrics.registry))

    async def drain(self, backend_id: str, drain: bool) -> tuple[int, dict[str, Any]]:
        runtime = self.server.find_backend(backend_id)
        if runtime is None:
            return 404, {"error": f"no backend {backend_id!r}"}
        runtime.set_drain(backend_id, drain)
        return 200, {
            "backend": backend_id,
            "state": getattr(runtime.state(backend_id), "value", None),
        }

    async def reload(self) -> tuple[int, dict[str, Any]]:
        from limpet.proxy.reload import describe, reload

        result = reload(self.server)
        return (200 if result[0] else 400), describe(result)

    async def rebalance(self, pool: str | None) -> tuple[int, dict[str, Any]]:
        """``POST /rebalance``: plan and move now, without the hold time (limpet.proxy.rebalance)."""
        import time

        runtimes = [r for name, r in self.server.pools.items() if pool is None or name == pool]
        if not runtimes:
            return 404, {"error": f"no pool {pool!r}"}
        pools = {}
        for runtime in runtimes:
            plan = runtime.sessions.tick(time.time(), force=True)
            pools[runtime.name] = {
                "moved": len(plan.moves),
                "spread": round(plan.spread, 3),
                "blocked": plan.blocked,
            }
        return 200, {"pools": pools}

    async def canary(self, pool: str | None, weight: str | None) -> tuple[int, dict[str, Any]]:
        """``POST /canary?pool=NAME&weight=PERCENT``: 0 rolls back, 100 promotes."""
        runtime = self.server.pools.get(pool or "")
        if runtime is None:
            return 404, {"error": f"no pool {pool!r}"}
        try:
            runtime.set_canary(int(weight or ""))
        except ValueError as exc:
            message = str(exc) if weight and weight.isdigit() else "weight: a percent, 0 to 100"
            return 400, {"error": message}
        return 200, {"pool": runtime.name, "weights": runtime.status()["canary"]["weights"]}

    async def ready(self) -> bool:
        return not self.server.stopping and all(
            runtime.pool.snapshot().eligible() for runtime in self.server.pools.values()
        )


class WorkersView:
    """Every worker's internal admin socket, asked in parallel and merged."""

    def __init__(self, sockets: list[str], timeout: float = 3.0) -> None:
        self.sockets = sockets
        self.timeout = timeout

    async def _ask(self, index: int, method: str, path: str) -> tuple[int, bytes]:
        import aiohttp

        connector = aiohttp.UnixConnector(path=self.sockets[index])
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.request(method, f"http://worker{index}{path}") as resp,
        ):
            return resp.status, await resp.read()

    async def _all(self, method: str, path: str) -> list[tuple[int, bytes] | BaseException]:
        return list(
            await asyncio.gather(
                *(self._ask(i, method, path) for i in range(len(self.sockets))),
                return_exceptions=True,
            )
        )

    async def status(self) -> dict[str, Any]:
        workers: list[dict[str, Any]] = []
        for index, answer in enumerate(await self._all("GET", "/status")):
            if isinstance(answer, BaseException) or answer[0] != 200:
                workers.append({"worker": index, "error": _describe(answer)})
            else:
                workers.append({"worker": index, **json.loads(answer[1])})
        return merge_status(workers)

    async def metrics(self) -> bytes:
        texts = [
            a[1].decode()
            for a in await self._all("GET", "/metrics")
            if not isinstance(a, BaseException) and a[0] == 200
        ]
        return sum_metrics(texts)

    async def drain(self, backend_id: str, drain: bool) -> tuple[int, dict[str, Any]]:
        path = f"/backends/{backend_id}/{'drain' if drain else 'undrain'}"
        answers = await self._all("POST", path)
        ok = [a for a in answers if not isinstance(a, BaseException) and a[0] == 200]
        if not ok:
            first = answers[0]
            if not isinstance(first, BaseException):
                return first[0], json.loads(first[1])
            return 502, {"error": _describe(first)}
        body: dict[str, Any] = json.loads(ok[0][1])
        body["workers"] = len(ok)
        return 200, body

    async def reload(self) -> tuple[int, dict[str, Any]]:
        answers = await self._all("POST", "/reload")
        workers = [
            {"worker": i, **json.loads(a[1])}
            if not isinstance(a, BaseException)
            else {"worker": i, "reloaded": False, "message": _describe(a)}
            for i, a in enumerate(answers)
        ]
        ok = all(w["reloaded"] for w in workers)
        return (200 if ok else 400), {
            "reloaded": ok,
            "message": workers[0]["message"] if workers else "",
            "workers": workers,
        }

    async def rebalance(self, pool: str | None) -> tuple[int, dict[str, Any]]:
        """Every worker rebalances its own share of the sessions."""
        path = "/rebalance" + (f"?pool={pool}" if pool else "")
        answers = await self._all("POST", path)
        workers = [
            {"worker": i, **json.loads(a[1])}
            if not isinstance(a, BaseException)
            else {"worker": i, "error": _describe(a)}
            for i, a in enumerate(answers)
        ]
        ok = any("pools" in w for w in workers)
        return (200 if ok else 502), {"workers": workers}

    async def canary(self, pool: str | None, weight: str | None) -> tuple[int, dict[str, Any]]:
        """Every worker splits its own new sessions: each is told."""
        from urllib.parse import urlencode

        query = urlencode({"pool": pool or "", "weight": weight or ""})
        answers = await self._all("POST", f"/canary?{query}")
        first = answers[0]
        if isinstance(first, BaseException):
            return 502, {"error": _describe(first)}
        body: dict[str, Any] = json.loads(first[1])
        body["workers"] = sum(
            1 for a in answers if not isinstance(a, BaseException) and a[0] == 200
        )
        return first[0], body

    async def ready(self) -> bool:
        answers = await self._all("GET", "/readyz")
        return all(not isinstance(a, BaseException) and a[0] == 200 for a in answers)


def _describe(answer: tuple[int, bytes] | BaseException) -> str:
    if isinstance(answer, BaseException):
        return f"{type(answer).__name__}: {answer}".rstrip(": ")
    return f"status {answer[0]}"


def merge_status(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """One status for N workers: counts summed per backend, every worker listed as it said."""
    live = [w for w in workers if "error" not in w]
    pools: dict[str, dict[str, Any]] = {}
    for worker in live:
        for pool in worker.get("pools", []):
            merged = pools.setdefault(
                pool["name"], {**pool, "backends": [], "panic": False, "_by_id": {}}
            )
            merged["panic"] = merged["panic"] or pool.get("panic", False)
            for backend in pool["backends"]:
                seen = merged["_by_id"].get(backend["id"])
                if seen is None:
                    seen = {**backend, "states": [backend["state"]]}
                    merged["_by_id"][backend["id"]] = seen
                    merged["backends"].append(seen)
                    continue
                seen["states"].append(backend["state"])
                for key in ("open", "sessions_pinned", "sessions", "idle_upstream_connections"):
                    seen[key] = seen.get(key, 0) + backend.get(key, 0)
                seen["seen_up"] = seen.get("seen_up", False) or backend.get("seen_up", False)
    for merged in pools.values():
        del merged["_by_id"]
        for backend in merged["backends"]:
            states = set(backend["states"])
            # workers agree unless a passive ejection happened in some of them only
            backend["state"] = states.pop() if len(states) == 1 else "mixed"
    return {
        "listeners": live[0]["listeners"] if live else [],
        "downstream_connections": sum(w.get("downstream_connections", 0) for w in live),
        "pools": list(pools.values()),
        "totals": {
            key: sum(w.get("totals", {}).get(key, 0) for w in live)
            for key in ("requests", "errors")
        },
        "workers": workers,
    }


# gauges whose sum over workers means nothing: the largest (any worker) is reported
_MAX_GAUGES = frozenset({"limpet_backend_healthy"})


def sum_metrics(texts: Iterable[str]) -> bytes:
    """Prometheus text of every worker -> one text with each series summed over workers."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            into = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in into:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(into[key], sample.value)
                elif family.name in _MAX_GAUGES:
                    into[key] = max(into[key], sample.value)
                else:
                    into[key] += sample.value
    for name, metric in families.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return bytes(generate_latest(registry))
