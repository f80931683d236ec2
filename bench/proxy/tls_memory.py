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
import socket
import ssl
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import Procs, cpu_seconds, free_port, limpet_argv, limpet_env  # noqa: E402

from tests.support.certs import TestCA  # noqa: E402

VARIANTS = [
    ("glibc defaults, no trim", {"LIMPET_MALLOC_TRIM": "0"}),
    ("MALLOC_ARENA_MAX=2, no trim", {"LIMPET_MALLOC_TRIM": "0", "MALLOC_ARENA_MAX": "2"}),
    ("malloc_trim every 10 s (default)", {}),
]


def client_hello() -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def abort_one(port: int, hello: bytes) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(hello)
        got = await asyncio.wait_for(reader.read(1), 10)
        return bool(got)
    except (OSError, TimeoutError):
        return False
    finally:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a reset, not a close: the handshake is aborted
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def burst(port: int, hello: bytes, total: int, concurrency: int) -> int:
    done = 0
    for start in range(0, total, concurrency):
        n = min(concurrency, total - start)
        results = await asyncio.gather(*(abort_one(port, hello) for _ in range(n)))
        done += sum(results)
    return done


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
        hello = client_hello()
        time.sleep(1.0)
        base = rss_kib(proc.pid)
        cpu0 = cpu_seconds(proc.pid)
        rounds = []
        for _ in range(args.rounds):
            ok = asyncio.run(burst(port, hello, args.per_round, args.concurrency))
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
