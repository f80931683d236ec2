"""Failover time: a hub replica SIGKILLed under half of N subscribers (the scenario of
tests/e2e/hub/test_failover_storm.py, tests/support/failover.py).

Two limpet hub replicas on one redis-server behind `limpet proxy --affinity engineio`; N
subscribers (tests/e2e/js/hub_failover.mjs, websocket, split over node processes) on one
channel, numbered messages published throughout (``--rate``, 10 a second); the replica holding
the larger half is SIGKILLed. Per client kind (``limpet``: limpet-client with its defaults;
``plain``: the official socket.io client with a fixed 100 ms reconnection delay, no jitter, no
reading of 1013) it prints the time from the kill until every client is subscribed again (or how
many were still away at ``--deadline``), the clients' own recovery times (disconnect to
resubscribed: p50 / p90 / max), the survivor's refusals, CPU seconds (from /proc: the
survivor's, the proxy's and the node clients', from the kill until all were back or the
deadline, the fan-out of the publishing included) and the subscribers' ledgers (lost,
duplicated, out of order, gaps announced).

    python bench/hub/failover.py --clients 4000 --kinds limpet,plain
    python bench/hub/failover.py --clients 4000 --limit 200      # a tighter admission bound
    python bench/hub/failover.py --clients 4000 --rate 1         # less fan-out meanwhile

Limpet only: Node socket.io has no history to resume from, so its clients' ledgers would not
compare. Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import aiohttp  # noqa: E402
from common import cpu_seconds, raise_nofile  # noqa: E402

from tests.conftest import start_redis  # noqa: E402
from tests.support.failover import Subscribers, failover, new_channel  # noqa: E402
from tests.support.procs import Procs  # noqa: E402
from tests.support.scaling import Rig  # noqa: E402

JS = ROOT / "tests" / "e2e" / "js"


async def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    procs = Procs()
    try:
        redis = start_redis(procs)
        hub_args = ("--max-handshakes", str(args.limit))
        rig = await asyncio.to_thread(
            Rig, procs, redis.url, rebalance=False, replicas=2, hubs=2, hub_args=hub_args
        )
        node = shutil.which("node") or "node"
        subscribers = Subscribers(node, JS, rig.url, new_channel(), args.clients, kind)
        cpu: dict[str, dict[str, float]] = {}

        def probe(moment: str, pid: int) -> None:
            cpu[moment] = {
                "survivor": cpu_seconds(pid),
                "proxy": cpu_seconds(rig.proxies[0].pid),
                "clients": sum(cpu_seconds(p.pid) for p in subscribers.procs),
            }

        try:
            await subscribers.start(timeout=args.deadline * 4)
            async with aiohttp.ClientSession() as http:
                outcome = await failover(
                    rig, subscribers, args.clients, args.deadline, http, probe, 1 / args.rate
                )
        finally:
            await subscribers.close()
        report = outcome.report
        end = cpu.get("back") or cpu["deadline"]
        spent = {k: round(end[k] - cpu["killed"][k], 1) for k in end}
        named = {f"hub-{i}": p for i, p in enumerate(rig.hubs)} | {"proxy": rig.proxies[0]}
        logs = "".join(procs.output(p) for p in named.values())
        if args.logs:
            folder = Path(args.logs)
            folder.mkdir(parents=True, exist_ok=True)
            for name, proc in named.items():
                (folder / f"{kind}-{name}.log").write_text(procs.output(proc))
        return {
            "kind": kind,
            "clients": args.clients,
            "failed_over": outcome.victim_clients,
            "all_back_s": outcome.recovery_s,
            "still_away": report["still_down"],
            "recovery_ms": report["recovery_ms"],
            "refused": outcome.survivor_health["admission"]["refused"],
            "client_errors": {
                "refused": report["refused"],
                "timeouts": report["timeouts"],
                "other": report["other_errors"],
                "examples": report["examples"][:5],
                "reconnects": report["reconnects"],
            },
            "cpu_s": spent,
            "published": outcome.published,
            "lost": report["lost"],
            "duplicated": report["duplicated"],
            "out_of_order": report["out_of_order"],
            "gaps": report["gaps"],
            "tracebacks": logs.count("Traceback"),
            "load": os.getloadavg()[0],
        }
    finally:
        procs.close()


def row(r: dict[str, Any]) -> str:
    back = f"{r['all_back_s']:.1f} s" if r["all_back_s"] is not None else f"{r['still_away']} away"
    ms = r["recovery_ms"]
    cpu = r["cpu_s"]
    return (
        f"| {r['kind']} | {r['clients']} | {r['failed_over']} | {back} | "
        f"{ms['p50'] / 1000:.1f} / {ms['p90'] / 1000:.1f} / {ms['max'] / 1000:.1f} s | "
        f"{r['refused']} | {cpu['survivor']} / {cpu['proxy']} / {cpu['clients']} | {r['lost']} | "
        f"{r['duplicated']} | {r['out_of_order']} | {r['gaps']} | {r['tracebacks']} | "
        f"{r['load']:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--kinds", default="limpet,plain")
    parser.add_argument("--limit", type=int, default=1000, help="the hubs' --max-handshakes")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for all")
    parser.add_argument("--rate", type=float, default=10.0, help="messages published a second")
    parser.add_argument("--json", default=None)
    parser.add_argument("--logs", default=None, help="keep the hubs' and the proxy's logs here")
    args = parser.parse_args()
    raise_nofile(4 * args.clients + 1024)
    results = [asyncio.run(run_one(kind.strip(), args)) for kind in args.kinds.split(",")]
    print(
        "| clients | N | failed over | all back in | per client p50 / p90 / max | refused "
        "| CPU s: survivor / proxy / clients | lost | dup | out of order | gaps | tracebacks "
        "| load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(row(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
