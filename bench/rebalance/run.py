"""The rebalance benchmark: S socket.io sessions on a 2 -> 4 replica scale-up.

    python bench/rebalance/run.py [--sessions 1000] [--rate 20] [--systems limpet,haproxy,nginx]

For each system: a redis-server, four `limpet hub` replicas on it, S subscribers (the official
socket.io client, websocket transport, resubscribing from their last offset after a reconnect:
tests/e2e/js/scale_clients.js) through the balancer to the first two replicas, one publisher (HTTP
to a hub) at 20 messages/s throughout. Then the balancer learns of the two other replicas:

- limpet: the config is rewritten and the proxy gets SIGHUP (`--rebalance`, the settings given);
- HAProxy (`balance leastconn` + `cookie SRV insert`): the two servers, `disabled` until then,
  are enabled through the runtime API (no reload, nothing restarts);
- nginx (`hash $arg_u consistent`, each client sending its own key `u`): the upstream is
  rewritten and nginx reloaded.

Reported: the time until every replica holds 25 % +- 5 % of the sessions (by the hubs' own
/healthz counts), the spread (fullest/mean) at fixed times after the scale-up, the messages
delivered, recovered (replayed after a move), duplicated and missing, the WebSocket close codes
the clients saw, and the CPU seconds of the balancer and the hubs during the move against the
same length of time before it. One JSON line per system on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (
    ROOT,
    Procs,
    cpu_seconds,
    free_port,
    limpet_argv,
    limpet_env,
    loadavg,
    raise_nofile,
    wait_port,
)

NODE_MODULES = ROOT / "tests" / "e2e" / "js" / "node_modules"
SAMPLE = 0.5  # seconds between two looks at the hubs' counts


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def counts(hub_ports: list[int]) -> list[int]:
    return [int(get(f"http://127.0.0.1:{p}/healthz")["clients"]) for p in hub_ports]


def spread(c: list[int]) -> float:
    total = sum(c)
    return round(max(c) * len(c) / total, 3) if total else 1.0


class Publisher(threading.Thread):
    """20 messages a second to one hub over its HTTP API, until stopped."""

    def __init__(self, hub_port: int, channel: str, rate: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{hub_port}/api/channels/{channel}/messages"
        self.period = 1 / rate
        self.sent = 0
        self.last = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            req = urllib.request.Request(
                self.url,
                data=json.dumps({"data": {"n": self.sent}}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                self.last = int(json.loads(r.read())["offset"])
            self.sent += 1
            self.halt.wait(self.period)


class Clients:
    def __init__(
        self, procs: Procs, url: str, sessions: int, channel: str, *, keyed: bool = False
    ) -> None:
        cfg = {"url": url, "count": sessions, "channel": channel, "concurrency": 50, "keyed": keyed}
        self.proc = subprocess.Popen(
            ["node", str(ROOT / "tests" / "e2e" / "js" / "scale_clients.js"), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, NODE_PATH=str(NODE_MODULES)),
            text=True,
            start_new_session=True,
        )
        procs.procs.append(self.proc)  # type: ignore[arg-type]

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise RuntimeError("the clients exited")
        result: dict[str, Any] = json.loads(text)
        return result

    def report(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "report"}) + "\n")
        self.proc.stdin.flush()
        return self.line()


def limpet_balancer(
    procs: Procs, hub_ports: list[int], args: argparse.Namespace, tmp: Path
) -> tuple[int, Any, Any]:
    """The proxy; returns (port, its process, a function that scales it to four replicas)."""
    port = free_port()
    config = tmp / "proxy.yaml"

    def write(n: int) -> None:
        backends = "".join(
            f"      - {{id: h{i}, url: 'http://127.0.0.1:{p}'}}\n"
            for i, p in enumerate(hub_ports[:n])
        )
        config.write_text(
            f"listeners: ['127.0.0.1:{port}']\nsecret: bench-secret\n"
            "limits: {max-connections: 20000}\n"
            "pools:\n  hubs:\n    affinity: {mode: engineio}\n    health: {interval: 0.5}\n"
            f"    rebalance: {{enabled: true, rate: {args.rate}, hold: {args.hold},"
            f" max-moving: {args.max_moving}}}\n"
            f"    backends:\n{backends}"
        )

    write(2)
    proc = procs.start(
        "proxy", limpet_argv("proxy", "--config", str(config)), limpet_env(), port=port
    )

    def scale() -> None:
        write(4)
        os.kill(proc.pid, 1)  # SIGHUP

    return port, proc, scale


def haproxy_balancer(
    procs: Procs, hub_ports: list[int], args: argparse.Namespace, tmp: Path
) -> tuple[int, Any, Any]:
    port = free_port()
    sock = tmp / "haproxy.sock"
    servers = "".join(
        f"  server h{i} 127.0.0.1:{p} cookie h{i}{' disabled' if i >= 2 else ''}\n"
        for i, p in enumerate(hub_ports)
    )
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(
        f"global\n  maxconn {2 * args.sessions + 100}\n  stats socket {sock} mode 600 level admin\n"
        "defaults\n  mode http\n  timeout connect 3s\n  timeout client 1h\n  timeout server 1h\n"
        "  timeout tunnel 1h\n"
        f"frontend fe\n  bind 127.0.0.1:{port}\n  default_backend hubs\n"
        f"backend hubs\n  balance leastconn\n  cookie SRV insert indirect nocache\n{servers}"
    )
    proc = procs.start("haproxy", ["haproxy", "-f", str(cfg)], port=port)

    def scale() -> None:
        import socket

        for i in (2, 3):  # the runtime API: the servers join without a reload
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                s.sendall(f"set server hubs/h{i} state ready\n".encode())
                s.recv(4096)

    return port, proc, scale


def nginx_balancer(
    procs: Procs, hub_ports: list[int], args: argparse.Namespace, tmp: Path
) -> tuple[int, Any, Any]:
    """nginx (open source: no sticky cookie): ``hash $arg_u consistent`` on a key each client
    sends from its first request; new replicas by rewriting the upstream and ``nginx -s reload``
    (old workers keep their open connections until they close)."""
    port = free_port()
    cfg = tmp / "nginx.conf"
    (tmp / "logs").mkdir(exist_ok=True)

    def write(n: int) -> None:
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in hub_ports[:n])
        cfg.write_text(
            f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/logs/error.log;\n"
            f"events {{ worker_connections {2 * args.sessions + 100}; }}\n"
            "http {\n  access_log off;\n"
            f"  upstream hubs {{\n    hash $arg_u consistent;\n{servers}  }}\n"
            f"  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n"
            "      proxy_pass http://hubs;\n      proxy_http_version 1.1;\n"
            "      proxy_set_header Upgrade $http_upgrade;\n"
            "      proxy_set_header Connection upgrade;\n      proxy_read_timeout 1h;\n"
            "    }\n  }\n}\n"
        )

    write(2)
    argv = ["nginx", "-p", str(tmp), "-c", str(cfg)]
    proc = procs.start("nginx", [*argv, "-g", "daemon off;"], port=port)

    def scale() -> None:
        write(4)
        subprocess.run([*argv, "-s", "reload"], check=True, capture_output=True)

    return port, proc, scale


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-rebalance-{name}-"))
    procs = Procs(tmp)
    try:
        redis_port = free_port()
        redis = procs.start(
            "redis",
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            port=redis_port,
        )
        del redis
        hub_ports = [free_port() for _ in range(4)]
        hubs = [
            procs.start(
                f"hub{i}",
                limpet_argv(
                    "hub",
                    "--listen",
                    f"127.0.0.1:{p}",
                    "--broker",
                    f"redis://127.0.0.1:{redis_port}",
                    "--name",
                    f"h{i}",
                ),
                limpet_env(),
            )
            for i, p in enumerate(hub_ports)
        ]
        for p, h in zip(hub_ports, hubs, strict=True):
            wait_port(p, h)
        make = {"limpet": limpet_balancer, "haproxy": haproxy_balancer, "nginx": nginx_balancer}[
            name
        ]
        port, balancer, scale = make(procs, hub_ports, args, tmp)
        channel = "bench-rebalance"
        clients = Clients(
            procs, f"http://127.0.0.1:{port}", args.sessions, channel, keyed=name == "nginx"
        )
        ready = clients.line()
        publisher = Publisher(hub_ports[0], channel)
        publisher.start()
        pids = [balancer.pid, *(h.pid for h in hubs)]
        time.sleep(2)  # warm-up
        # the steady window the move's CPU is compared with: as long, just before it
        steady_from = [cpu_seconds(p) for p in pids]
        time.sleep(args.window)
        cpu_at_scale = [cpu_seconds(p) for p in pids]
        steady = [b - a for a, b in zip(steady_from, cpu_at_scale, strict=True)]
        start_counts = counts(hub_ports)
        scale()
        moved_at = time.monotonic()
        even_after: float | None = None
        timeline: list[tuple[float, list[int]]] = []
        low, high = args.sessions * 0.20, args.sessions * 0.30
        while time.monotonic() - moved_at < args.window:
            time.sleep(SAMPLE)
            c = counts(hub_ports)
            elapsed = round(time.monotonic() - moved_at, 1)
            timeline.append((elapsed, c))
            if even_after is None and all(low <= x <= high for x in c):
                even_after = elapsed
        move_cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu_at_scale, strict=True)]
        publisher.halt.set()
        publisher.join()
        time.sleep(2)  # the last messages reach the clients
        report = clients.report()
        return {
            "system": name,
            "sessions": ready["clients"],
            "before": start_counts,
            "even_after_s": even_after,
            "spread_at": {  # the sample nearest each mark
                str(mark): spread(min(timeline, key=lambda tc: abs(tc[0] - mark))[1])
                for mark in (5, 10, 20, 30, 45, 60)
                if timeline and mark <= timeline[-1][0] + SAMPLE
            },
            "final": timeline[-1][1] if timeline else None,
            "final_spread": spread(timeline[-1][1]) if timeline else None,
            "published": publisher.sent,
            "clients": report,
            "cpu_move_s": {"balancer": round(move_cpu[0], 2), "hubs": round(sum(move_cpu[1:]), 2)},
            "cpu_steady_s": {"balancer": round(steady[0], 2), "hubs": round(sum(steady[1:]), 2)},
            "window_s": args.window,
            "loadavg": loadavg(),
        }
    finally:
        procs.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="limpet: moves per second")
    parser.add_argument("--hold", type=float, default=10.0, help="limpet: seconds past the bound")
    parser.add_argument("--max-moving", type=float, default=0.1)
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds watched after the scale-up"
    )
    parser.add_argument(
        "--systems",
        default="limpet,haproxy,nginx",
        help="comma-separated, run in this order: limpet, haproxy, nginx",
    )
    args = parser.parse_args()
    raise_nofile(4 * args.sessions + 1024)
    for name in [s for s in args.systems.split(",") if s]:
        print(json.dumps(run_one(name, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
