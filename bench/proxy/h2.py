"""Benchmark: HTTP/2 at the front door, limpet against HAProxy, nginx and Envoy (each when
installed), with h2load, HTTP/1.1 backends, the sticky cookie on every request (nginx hashes a
fixed one; Envoy hashes the cookie it generates, as in bench/proxy/run.py).

Each proxy is pinned alone to one core (``--proxy-cpu``); the backends and h2load share the
other. For each front end (h2c with prior knowledge, h2 over TLS by ALPN, and HTTP/1.1 through
the same h2load ``--h1`` as the reference) it reports requests/s and the proxy's CPU µs per
request (utime+stime from /proc over the run, divided by the requests that succeeded). Then
the memory of idle connections: ``--idle`` connections that sent the preface and SETTINGS (or
nothing, for HTTP/1.1) and wait, as the proxy's RSS grows per connection.

    LIMPET_BENCH=1 scripts/bootstrap        # nginx for the backends, envoy into .venv/bin;
                                            # nghttp2-client for h2load
    python bench/proxy/h2.py --duration 5 --rounds 2
    python bench/proxy/h2.py --only limpet --rounds 3   # limpet alone (before/after a change)
"""

from __future__ import annotations

import argparse
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "proxy"))
sys.path.insert(0, str(ROOT))
from common import (  # noqa: E402
    Procs,
    cpu_seconds,
    free_port,
    limpet_argv,
    limpet_env,
    rss_bytes,
    wait_port,
)
from run import haproxy_config, start_backends, which  # noqa: E402

from tests.support.certs import TestCA  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def h2load(url: str, cookie: str, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        ["taskset", "-c", args.load_cpu, "h2load", "-D", str(args.duration),
         "-c", str(args.connections), "-m", str(args.streams), "-t", "1",
         "-H", f"cookie: {cookie}", *extra, url],
        capture_output=True, text=True, timeout=args.duration + 60,
    ).stdout  # fmt: skip
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if done is None or rps is None:
        raise RuntimeError(f"h2load said:\n{out[-1500:]}")
    return {"requests": int(done.group(1)), "rps": float(rps.group(1))}


def cookie_of(url: str, ca: Path | None) -> str:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
        return resp.headers.get("Set-Cookie", "").split(";", 1)[0]


def syscalls(pid: int) -> int:
    """The read and write system calls ``pid`` made so far (/proc/PID/io: syscr + syscw).

    The kernel counts read/write/readv/writev there, not recv/send (HAProxy's), so the figure
    is printed for limpet only: it compares limpet's builds, not the peers."""
    text = Path(f"/proc/{pid}/io").read_text()
    return sum(int(v) for k, v in re.findall(r"^(syscr|syscw): (\d+)$", text, re.M))


def measure(
    pid: int, url: str, cookie: str, args: argparse.Namespace, *extra: str
) -> dict[str, Any]:
    h2load(url, cookie, argparse.Namespace(**{**vars(args), "duration": 1}), *extra)  # warm up
    best: dict[str, Any] = {}
    for _ in range(args.rounds):
        cpu0, sys0 = cpu_seconds(pid), syscalls(pid)
        r = h2load(url, cookie, args, *extra)
        r["cpu_us"] = 1e6 * (cpu_seconds(pid) - cpu0) / max(1, r["requests"])
        r["rw"] = (syscalls(pid) - sys0) / max(1, r["requests"])
        if not best or r["cpu_us"] < best["cpu_us"]:
            best = r
    return best


def envoy_config(
    path: Path, port: int, sport: int, backends: list[int], cert: Path, key: Path
) -> None:
    """Envoy with one cleartext listener (codec AUTO: HTTP/1.1, or h2c by its preface) and one
    TLS listener offering h2 and http/1.1 by ALPN; ring hash on the cookie it generates."""
    hcm = """      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: be
                  hash_policy:
                  - cookie: {name: envoy_sticky, ttl: 3600s}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""
    tls = f"""      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {{filename: {cert}}}
              private_key: {{filename: {key}}}
"""
    endpoints = "".join(
        f"        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}\n"
        for p in backends
    )
    path.write_text(
        "static_resources:\n  listeners:\n"
        f"  - name: plain\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n"
        f"    filter_chains:\n    - filters:\n{hcm}"
        f"  - name: tls\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {sport}}}}}\n"
        f"    filter_chains:\n    - filters:\n{hcm}{tls}"
        "  clusters:\n  - name: be\n    type: STATIC\n    lb_policy: RING_HASH\n"
        "    load_assignment:\n      cluster_name: be\n      endpoints:\n      - lb_endpoints:\n"
        f"{endpoints}"
    )


def idle_cost(pid: int, port: int, n: int, h2: bool) -> float:
    """Bytes of the proxy's RSS per idle connection (``n`` of them opened at once)."""
    before = rss_bytes(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if h2:
            s.sendall(PREFACE)
        socks.append(s)
    if h2:
        for s in socks:  # the server's SETTINGS came back: the connection is set up
            s.settimeout(5)
            s.recv(4096)
    time.sleep(0.5)
    after = rss_bytes(pid)
    for s in socks:
        s.close()
    return (after - before) / n


def wanted(name: str, label: str, hint: str, only: set[str], rows: list[Any]) -> str | None:
    """The peer's binary when --only asks for it and it is installed (else a row says why)."""
    if name not in only:
        return None
    binary = which(name)
    if binary is None:
        rows.append((label, "-", f"not available ({hint})"))
    return binary


def fronts(
    label: str, pid: int, cookie: str, args: argparse.Namespace, urls: list[tuple[str, str]]
) -> list[tuple[str, str, dict[str, Any]]]:
    """One row per front end: (front end, URL), HTTP/1.1 measured with h2load --h1."""
    return [
        (label, proto, measure(pid, url, cookie, args, *(["--h1"] if proto == "HTTP/1.1" else [])))
        for proto, url in urls
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", choices=["whoami", "nginx"], default="nginx")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--streams", type=int, default=10, help="concurrent streams per connection")
    ap.add_argument("--rounds", type=int, default=1, help="best of N per figure")
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--proxy-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument(
        "--only", default="limpet,haproxy,nginx,envoy", help="the proxies to run, comma-separated"
    )
    args = ap.parse_args()
    only = set(args.only.lower().split(","))

    procs = Procs(Path(tempfile.mkdtemp(prefix="limpet-bench-h2-")))
    rows: list[tuple[str, str, dict[str, Any] | str]] = []
    idle: list[tuple[str, float]] = []
    try:
        ca = TestCA(procs.logdir / "pki")
        leaf = ca.leaf("localhost", "127.0.0.1")
        backends = start_backends(procs, args.backends, 3, args.load_cpu)

        # limpet: one listener each for h2c (+ HTTP/1.1) and TLS
        plain, tls = free_port(), free_port()
        for name, port, flags in (
            (
                ("limpet", plain, ["--h2c"]),
                ("limpet-tls", tls, ["--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key)]),
            )
            if "limpet" in only
            else ()
        ):
            argv = ["taskset", "-c", args.proxy_cpu, *limpet_argv("proxy"), "--listen",
                    f"127.0.0.1:{port}", "--secret", "bench", "--no-health",
                    "--log-level", "warning", *flags]  # fmt: skip
            for i, p in enumerate(backends):
                argv += ["--backend", f"b{i}=http://127.0.0.1:{p}"]
            proc = procs.start(name, argv, limpet_env(), port=port)
            if name == "limpet":
                url = f"http://127.0.0.1:{port}/"
                cookie = cookie_of(url, None)
                rows.append(("limpet", "HTTP/1.1", measure(proc.pid, url, cookie, args, "--h1")))
                rows.append(("limpet", "h2c", measure(proc.pid, url, cookie, args)))
                # HTTP/1.1 first: memory freed by the h2 ones would be reused by the next
                idle.append(("limpet HTTP/1.1", idle_cost(proc.pid, port, args.idle, False)))
                idle.append(("limpet h2c", idle_cost(proc.pid, port, args.idle, True)))
            else:
                url = f"https://127.0.0.1:{port}/"
                cookie = cookie_of(url, ca.path)
                rows.append(("limpet", "h2 (TLS)", measure(proc.pid, url, cookie, args)))
            procs.stop([proc])

        binary = wanted("haproxy", "HAProxy", "Debian package haproxy", only, rows)
        if binary is not None:
            bundle = procs.logdir / "haproxy.pem"
            bundle.write_bytes(leaf.cert.read_bytes() + leaf.key.read_bytes())
            port, sport = free_port(), free_port()
            cfg = haproxy_config(port, backends).replace(
                f"bind 127.0.0.1:{port}",
                f"bind 127.0.0.1:{port} proto h2\n  bind 127.0.0.1:{sport} ssl crt {bundle} alpn h2,http/1.1",
            )
            h1port = free_port()
            cfg = cfg.replace("frontend fe\n", f"frontend fe\n  bind 127.0.0.1:{h1port}\n")
            (procs.logdir / "haproxy.cfg").write_text(cfg)
            proc = procs.start(
                "haproxy", ["taskset", "-c", args.proxy_cpu, binary, "-f",
                            str(procs.logdir / "haproxy.cfg"), "-db"], port=port
            )  # fmt: skip
            cookie = cookie_of(f"http://127.0.0.1:{h1port}/", None)
            rows += fronts("HAProxy", proc.pid, cookie, args, [
                ("HTTP/1.1", f"http://127.0.0.1:{h1port}/"),
                ("h2c", f"http://127.0.0.1:{port}/"),
                ("h2 (TLS)", f"https://127.0.0.1:{sport}/"),
            ])  # fmt: skip
            idle.append(("HAProxy h2c", idle_cost(proc.pid, port, args.idle, True)))
            procs.stop([proc])

        binary = wanted("nginx", "nginx", "Debian package nginx-light", only, rows)
        if binary is not None:
            d = procs.logdir
            h1port, port, sport = free_port(), free_port(), free_port()
            servers = "".join(f"    server 127.0.0.1:{p};\n" for p in backends)
            conf = d / "nginx-h2.conf"
            conf.write_text(
                f"daemon off; master_process off; worker_processes 1; pid {d}/nginx-h2.pid;\n"
                f"error_log stderr error; events {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; client_body_temp_path {d}/nb; proxy_temp_path {d}/np;\n"
                # (default 1000: h2load's connections would be closed every 1000 requests)
                f"  keepalive_requests 100000000;\n"
                f"  upstream be {{ hash $cookie_sticky consistent;\n{servers}    keepalive 64; }}\n"
                f"  server {{ listen 127.0.0.1:{h1port}; listen 127.0.0.1:{port} http2;\n"
                f"    listen 127.0.0.1:{sport} ssl http2;\n"
                f"    ssl_certificate {leaf.cert}; ssl_certificate_key {leaf.key};\n"
                f"    location / {{ proxy_pass http://be; proxy_http_version 1.1;\n"
                f'      proxy_set_header Connection ""; }} }} }}\n'
            )
            proc = procs.start(
                "nginx-h2", ["taskset", "-c", args.proxy_cpu, binary, "-c", str(conf), "-p", str(d)],
                port=port,
            )  # fmt: skip
            cookie = "sticky=bench-session-1"  # nginx sets none: it hashes this one
            rows += fronts("nginx", proc.pid, cookie, args, [
                ("HTTP/1.1", f"http://127.0.0.1:{h1port}/"),
                ("h2c", f"http://127.0.0.1:{port}/"),
                ("h2 (TLS)", f"https://127.0.0.1:{sport}/"),
            ])  # fmt: skip
            idle.append(("nginx h2c", idle_cost(proc.pid, port, args.idle, True)))
            procs.stop([proc])

        binary = wanted("envoy", "Envoy", "LIMPET_BENCH=1 scripts/bootstrap", only, rows)
        if binary is not None:
            port, sport = free_port(), free_port()
            cfg = procs.logdir / "envoy-h2.yaml"
            envoy_config(cfg, port, sport, backends, leaf.cert, leaf.key)
            proc = procs.start(
                "envoy-h2", ["taskset", "-c", args.proxy_cpu, binary, "-c", str(cfg),
                             "--concurrency", "1", "--disable-hot-restart", "-l", "warn"],
                port=port,
            )  # fmt: skip
            wait_port(sport, proc)
            cookie = cookie_of(f"http://127.0.0.1:{port}/", None)
            rows += fronts("Envoy", proc.pid, cookie, args, [
                ("HTTP/1.1", f"http://127.0.0.1:{port}/"),
                ("h2c", f"http://127.0.0.1:{port}/"),
                ("h2 (TLS)", f"https://127.0.0.1:{sport}/"),
            ])  # fmt: skip
            idle.append(("Envoy h2c", idle_cost(proc.pid, port, args.idle, True)))
            procs.stop([proc])
    finally:
        procs.close()

    base = {proto: r for name, proto, r in rows if name == "HAProxy" and isinstance(r, dict)}
    h1 = next(
        (r for n, p, r in rows if n == "limpet" and p == "HTTP/1.1" and isinstance(r, dict)), None
    )
    print(
        "| proxy | front end | req/s | CPU µs/req | reads+writes/req | vs HAProxy CPU "
        "| vs limpet HTTP/1.1 CPU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, proto, r in rows:
        if not isinstance(r, dict):
            print(f"| {name} | {proto} | {r} | | | | |")
            continue
        b = base.get(proto)
        vs_ha = f"{r['cpu_us'] / b['cpu_us']:.2f}" if b else "-"
        vs_h1 = f"{r['cpu_us'] / h1['cpu_us']:.2f}" if h1 and name == "limpet" else "-"
        rw = f"{r['rw']:.2f}" if name == "limpet" else "-"
        print(
            f"| {name} | {proto} | {r['rps']:,.0f} | {r['cpu_us']:.1f} | {rw} | {vs_ha} | {vs_h1} |"
        )
    print()
    print(f"| idle connections ({args.idle}) | RSS per connection |")
    print("|---|---:|")
    for name, per in idle:
        print(f"| {name} | {per / 1024:.1f} KB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
