"""Fan-out and publish on a clustered broker vs one node, in one run (issue: past one broker node).

Starts, on loopback, one redis-server, a Redis Cluster (3 masters + 3 replicas, made with
``redis-cli --cluster create``) and a 3-server NATS cluster with JetStream (tests/support/clusters.py
starts them the same way for the failover tests), then runs ``bench/hub/run.py --systems
limpet-redis|limpet-nats --broker URL`` against each and prints the figures side by side.

    python bench/hub/cluster.py                         # one-channel and many-channels
    python bench/hub/cluster.py --subscribers 300 --scenarios one-channel --settle 3 --drain 5
    python bench/hub/cluster.py --brokers redis,redis-cluster --scenarios many-channels

Every process is stopped at the end. On a 2-core machine the cluster's servers share the cores
with the hubs and the subscribers, so this measures the cost of the clustered path, not how it
grows with shards on separate hosts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.conftest import start_redis  # noqa: E402
from tests.support.clusters import start_nats_cluster, start_redis_cluster  # noqa: E402
from tests.support.procs import Procs  # noqa: E402


def run(system: str, broker: str, args: argparse.Namespace) -> None:
    """One bench/hub/run.py run of ``system`` on ``broker``; it prints its own table."""
    out = Path(tempfile.mkdtemp(prefix="limpet-bench-")) / "run.json"
    argv = [
        sys.executable, str(ROOT / "bench" / "hub" / "run.py"), "--systems", system,
        "--broker", broker, "--scenarios", args.scenarios, "--settle", str(args.settle),
        "--drain", str(args.drain), "--subscribers", str(args.subscribers), "--json", str(out),
    ]  # fmt: skip
    subprocess.run(argv, check=True, cwd=ROOT)


def _single(procs: Procs) -> str:
    return start_redis(procs).url


def _redis_cluster(procs: Procs) -> str:
    cluster = start_redis_cluster(procs)
    cluster.wait_ok()
    return cluster.url


def _nats_cluster(procs: Procs) -> str:
    return start_nats_cluster(procs).url


#: --brokers name -> (label, bench/hub/run.py system, starter returning the broker URL)
BROKERS: dict[str, tuple[str, str, Callable[[Procs], str]]] = {
    "redis": ("redis, one node", "limpet-redis", _single),
    "redis-cluster": ("redis cluster, 3 masters", "limpet-redis", _redis_cluster),
    "nats-cluster": ("nats cluster, 3 servers", "limpet-nats", _nats_cluster),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="one-channel,many-channels")
    parser.add_argument("--settle", type=float, default=5)
    parser.add_argument("--drain", type=float, default=5)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument(
        "--brokers",
        default=",".join(BROKERS),
        help=f"which of {', '.join(BROKERS)} to run, comma-separated (default: all)",
    )
    args = parser.parse_args()
    chosen = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BROKERS))
    if unknown:
        parser.error(f"unknown broker(s) {', '.join(unknown)}; choose from {', '.join(BROKERS)}")
    procs = Procs()
    try:
        setups = []
        for name in chosen:
            label, system, start = BROKERS[name]
            setups.append((label, system, start(procs)))
        for label, system, url in setups:
            print(f"\n=== {label}: {url}", flush=True)
            run(system, url, args)
    finally:
        procs.close()


if __name__ == "__main__":
    main()
