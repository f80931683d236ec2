"""Benchmark: limpet proxy vs HAProxy on the same backends, sticky-cookie path, with wrk.

Each proxy gets one core (limpet: one worker process; HAProxy: ``nbthread 1``), both pinned
with taskset to the same CPU. The sticky-cookie path: a first request obtains the proxy's
affinity cookie (limpet's signed token / HAProxy's ``cookie SRV insert``), then wrk sends every
request with it, so every request takes the pinned-session path.

    python bench/proxy/run.py                       # whoami backends (the demo backend)
    python bench/proxy/run.py --backends nginx      # nginx backends: the proxy is the bottleneck
    python bench/proxy/run.py --duration 10 --connections 50

Prints requests/s and p99 latency for each and the ratio limpet/HAProxy.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import Procs, free_port, limpet_argv, limpet_env  # noqa: E402


def start_backends(procs: Procs, kind: str, n: int) -> list[int]:
    ports = []
    for i in range(n):
        port = free_port()
        if kind == "whoami":
            argv = limpet_argv("whoami", "--listen", f"127.0.0.1:{port}", "--name", f"b{i}")
            procs.start(f"whoami-{i}", [*argv, "--no-socketio"], limpet_env(), port=port)
        else:
            conf = procs.logdir / f"nginx-{i}.conf"
            conf.write_text(
                f"daemon off; master_process off; worker_processes 1; pid {procs.logdir}/n{i}.pid;\n"
                f"error_log stderr; events {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; server {{ listen 127.0.0.1:{port};\n"
                f'  location / {{ return 200 "b{i}\\n"; }} }} }}\n'
            )
            procs.start(
                f"nginx-{i}", ["nginx", "-c", str(conf), "-p", str(procs.logdir)], port=port
            )
        ports.append(port)
    return ports


def haproxy_config(port: int, backends: list[int]) -> str:
    servers = "\n".join(f"  server b{i} 127.0.0.1:{p} cookie b{i}" for i, p in enumerate(backends))
    return f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
  cookie SRV insert indirect nocache
  option forwardfor
{servers}
"""


def sticky_cookie(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        header = resp.headers.get("Set-Cookie", "")
    return header.split(";", 1)[0]


def wrk(url: str, cookie: str, threads: int, connections: int, duration: int) -> tuple[float, str]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Cookie: {cookie}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    return rps, p99


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", choices=["whoami", "nginx"], default="whoami")
    ap.add_argument("--count", type=int, default=3, help="number of backends")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu", default="0", help="CPU both proxies are pinned to (taskset -c)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two proxies N times")
    args = ap.parse_args()

    procs = Procs(Path(tempfile.mkdtemp(prefix="limpet-bench-")))
    try:
        backends = start_backends(procs, args.backends, args.count)
        limpet_port, haproxy_port = free_port(), free_port()
        argv = [
            "taskset",
            "-c",
            args.cpu,
            *limpet_argv("proxy"),
            "--listen",
            f"127.0.0.1:{limpet_port}",
            "--secret",
            "bench",
            "--log-level",
            "warning",
        ]
        for i, p in enumerate(backends):
            argv += ["--backend", f"b{i}=http://127.0.0.1:{p}"]
        procs.start("limpet", argv, limpet_env(), port=limpet_port)
        cfg = procs.logdir / "haproxy.cfg"
        cfg.write_text(haproxy_config(haproxy_port, backends))
        procs.start(
            "haproxy",
            ["taskset", "-c", args.cpu, "haproxy", "-f", str(cfg), "-db"],
            port=haproxy_port,
        )

        results: dict[str, list[tuple[float, str]]] = {"limpet": [], "haproxy": []}
        targets = {
            "limpet": f"http://127.0.0.1:{limpet_port}/",
            "haproxy": f"http://127.0.0.1:{haproxy_port}/",
        }
        cookies = {name: sticky_cookie(url) for name, url in targets.items()}
        for name, url in targets.items():  # warm up
            wrk(url, cookies[name], 1, 10, 2)
        for _ in range(args.rounds):
            for name, url in targets.items():
                results[name].append(
                    wrk(url, cookies[name], args.threads, args.connections, args.duration)
                )
        print(
            f"backends: {args.count} x {args.backends}; wrk -t{args.threads} "
            f"-c{args.connections} -d{args.duration}s; proxies pinned to CPU {args.cpu}"
        )
        best = {}
        for name, runs in results.items():
            rps, p99 = max(runs)
            best[name] = rps
            print(f"{name:8} {rps:10.0f} req/s   p99 {p99:>8}   (cookie {cookies[name][:32]}...)")
        print(f"ratio limpet/haproxy: {best['limpet'] / best['haproxy']:.2f}")
    finally:
        procs.close()
        shutil.rmtree(procs.logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
