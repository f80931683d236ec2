"""Benchmark: TLS termination, limpet proxy vs HAProxy, same certificate, same backends, wrk.

Two figures per proxy, both pinned with taskset to the same CPU (one core each):
- handshakes/s: every request on a new TLS connection (``Connection: close``), so each request
  costs a full handshake (ECDSA P-256 certificate, TLS 1.3, no session resumption by wrk);
- keep-alive req/s: the sticky-cookie path over established TLS connections.

    python bench/proxy/tls.py --backends nginx --duration 8 --rounds 2

The certificate and its CA are made here (cryptography), as in the tests.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "proxy"))
sys.path.insert(0, str(ROOT))
from common import Procs, free_port, limpet_argv, limpet_env  # noqa: E402
from run import haproxy_config, start_backends  # noqa: E402

from tests.support.certs import TestCA  # noqa: E402


def wrk(url: str, cookie: str, connections: int, duration: int, *, close: bool = False) -> float:
    """Requests/s from wrk -t1; ``close``: a new connection (a full handshake) per request."""
    import re
    import subprocess

    headers = ["-H", f"Cookie: {cookie}"] + (["-H", "Connection: close"] if close else [])
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", *headers, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        print(out, file=sys.stderr)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def sticky_cookie(url: str, ca: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
        return resp.headers.get("Set-Cookie", "").split(";", 1)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", choices=["whoami", "nginx"], default="nginx")
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--cpu", default="0")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    procs = Procs(Path(tempfile.mkdtemp(prefix="limpet-bench-tls-")))
    try:
        ca = TestCA(procs.logdir / "pki")
        leaf = ca.leaf("localhost", "127.0.0.1")
        bundle = procs.logdir / "haproxy.pem"
        bundle.write_bytes(leaf.cert.read_bytes() + leaf.key.read_bytes())
        backends = start_backends(procs, args.backends, args.count)
        limpet_port, haproxy_port = free_port(), free_port()
        argv = ["taskset", "-c", args.cpu, *limpet_argv("proxy"), "--listen",
                f"127.0.0.1:{limpet_port}", "--secret", "bench", "--log-level", "warning",
                "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key)]  # fmt: skip
        for i, p in enumerate(backends):
            argv += ["--backend", f"b{i}=http://127.0.0.1:{p}"]
        procs.start("limpet", argv, limpet_env(), port=limpet_port)
        cfg = procs.logdir / "haproxy.cfg"
        cfg.write_text(
            haproxy_config(haproxy_port, backends).replace(
                f"bind 127.0.0.1:{haproxy_port}",
                f"bind 127.0.0.1:{haproxy_port} ssl crt {bundle} alpn http/1.1 ssl-min-ver TLSv1.2",
            )
        )
        procs.start("haproxy", ["taskset", "-c", args.cpu, "haproxy", "-f", str(cfg), "-db"],
                    port=haproxy_port)  # fmt: skip
        targets = {
            "limpet": f"https://127.0.0.1:{limpet_port}/",
            "haproxy": f"https://127.0.0.1:{haproxy_port}/",
        }
        cookies = {n: sticky_cookie(u, ca.path) for n, u in targets.items()}
        results: dict[tuple[str, str], list[float]] = {}
        for name, url in targets.items():  # warm up
            wrk(url, cookies[name], 10, 2)
        for _ in range(args.rounds):
            for name, url in targets.items():
                keep = wrk(url, cookies[name], args.connections, args.duration)
                close = wrk(url, cookies[name], args.connections, args.duration, close=True)
                results.setdefault((name, "keep-alive"), []).append(keep)
                results.setdefault((name, "handshake"), []).append(close)
        print(f"backends: {args.count} x {args.backends}; wrk -t1 -c{args.connections} "
              f"-d{args.duration}s; proxies pinned to CPU {args.cpu}")  # fmt: skip
        for kind in ("handshake", "keep-alive"):
            best = {n: max(results[(n, kind)]) for n in targets}
            print(f"{kind:11} limpet {best['limpet']:9.0f}/s   haproxy {best['haproxy']:9.0f}/s"
                  f"   ratio {best['limpet'] / best['haproxy']:.2f}")  # fmt: skip
    finally:
        procs.close()
        shutil.rmtree(procs.logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
