"""Measurement: the proxy's memory (RSS) after bursts of aborted TLS handshakes, and after.

Each round opens ``--concurrency`` connections at a time to a TLS listener, sends a real
ClientHello on each (made by Python's ssl module on a MemoryBIO), waits for the server's first
flight (the handshake's keys and buffers are allocated by then) and resets every connection
(SO_LINGER 0): ``--per-round`` aborted handshakes per round, ``--rounds`` rounds. The RSS of the
proxy (/proc/PID/status VmRSS) is read before, after each round, and ``--settle`` seconds after
the last round. Three variants side by side in one run:

- glibc defaults, no trim (``LIMPET_MALLOC_TRIM=0``);
- ``MALLOC_ARENA_MAX=2``, no trim;
- the default: ``malloc_trim(0)`` every 10 s (limpet.proxy.memory).

    python bench/proxy/tls_memory.py --rounds 8 --per-round 2000 --concurrency 500
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import Procs, cpu_seconds, free_port, limpet_argv, limpet_env  # noqa: E402

from tests.support.certs import TestCA  # noqa: E402
from tests.support.handshakes import burst, rss_kib  # noqa: E402

VARIANTS = [
    ("glibc defaults, no trim", {"LIMPET_MALLOC_TRIM": "0"}),
    ("MALLOC_ARENA_MAX=2, no trim", {"LIMPET_MALLOC_TRIM": "0", "MALLOC_ARENA_MAX": "2"}),
    ("malloc_trim every 10 s (default)", {}),
]


def run_variant(name: str, env: dict[str, str], args: argparse.Namespace, tmp: Path) -> dict:
    ca = TestCA(tmp / f"pki-{len(name)}")
    leaf = ca.leaf("a.test")
    procs = Procs(tmp)
    port = free_port()
    try:
        proc = procs.start(
            "proxy-" + name.split()[0],
            limpet_argv(
                "proxy", "--listen", f"127.0.0.1:{port}", "--backend", "127.0.0.1:9",
                "--no-health", "--secret", "s", "--log-level", "warning",
                "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key),
            ),
            dict(limpet_env(), **env),
            port=port,
        )  # fmt: skip
        time.sleep(1.0)
        base = rss_kib(proc.pid)
        cpu0 = cpu_seconds(proc.pid)
        rounds = []
        for _ in range(args.rounds):
            ok = asyncio.run(burst(port, args.per_round, args.concurrency))
            rounds.append((rss_kib(proc.pid), ok))
        cpu = cpu_seconds(proc.pid) - cpu0
        time.sleep(args.settle)
        after = rss_kib(proc.pid)
        return {"name": name, "base": base, "rounds": rounds, "after": after, "cpu": cpu}
    finally:
        procs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--settle", type=float, default=12.0, help="seconds after the last round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="limpet-tls-mem-") as tmp:
        results = [run_variant(name, env, args, Path(tmp)) for name, env in VARIANTS]
    print("| variant | RSS before | peak (round) | after the last round | "
          f"{args.settle:g} s later | handshakes answered | proxy CPU s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        peak = max(k for k, _ in r["rounds"])
        answered = sum(ok for _, ok in r["rounds"])
        print(
            f"| {r['name']} | {r['base'] / 1024:.0f} MB | {peak / 1024:.0f} MB | "
            f"{r['rounds'][-1][0] / 1024:.0f} MB | {r['after'] / 1024:.0f} MB | "
            f"{answered}/{args.rounds * args.per_round} | {r['cpu']:.1f} |"
        )


if __name__ == "__main__":
    main()
