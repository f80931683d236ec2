"""Hub fan-out benchmark: limpet hub (Redis, NATS) vs python-socketio + AsyncRedisManager vs Node
socket.io + @socket.io/redis-adapter, 3 replicas each, on one redis-server, in one run.

Every system gets the same load generator (bench/hub/node/load.mjs, the official socket.io client
over websocket), the same subscribers, channels, rate and message count. Prints a table, writes JSON.
Every process it starts runs in its own process group and is killed on exit, Ctrl-C included.

Scenarios: one channel, many channels, and a subscribe storm (every subscriber connects, then all
subscribe to one channel at the same moment, then messages; "lost" = expected - delivered must be
0, a refused subscribe being expected nothing). ``--broker URL`` runs against a broker that is
already there (e.g. a Redis cluster, or nats://...) instead of starting redis-server /
nats-server: nothing is flushed there and each scenario uses channels of its own
(``bench-<run>-<scenario>-N``, left behind in the broker's history).

    python bench/hub/run.py [--subscribers 1000] [--systems limpet-redis,limpet-nats,...] [--json F]
    python bench/hub/run.py --scenarios subscribe-storm --systems limpet-redis
    python bench/hub/run.py --broker redis://127.0.0.1:7000 --systems limpet-redis
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE_DIR = HERE / "node"
sys.path.insert(0, str(HERE.parent))
from common import Procs, free_port, wait_port  # noqa: E402

SYSTEMS = ("limpet-redis", "limpet-nats", "python-socketio", "node-socketio")
LABELS = {
    "limpet-redis": "limpet hub (redis)",
    "limpet-nats": "limpet hub (nats)",
    "python-socketio": "python-socketio + AsyncRedisManager",
    "node-socketio": "node socket.io + redis-adapter",
}


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Ready means the socket.io endpoint answers an Engine.IO handshake."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        probe = f"{url}/socket.io/?EIO=4&transport=polling"
        with contextlib.suppress(OSError), urllib.request.urlopen(probe, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@dataclass
class Phase:
    name: str
    rate: float
    messages: int
    drain: float | None = None  # longest wait after the last publish (None: --drain)
    quiet: float | None = None  # also stop once nothing arrived for this long


@dataclass
class Scenario:
    name: str
    channels: int
    phases: list[Phase]
    storm: bool = False  # all subscribes at once, after every subscriber has connected


def rate_count(text: str) -> tuple[float, int]:
    """``RATE:COUNT`` -> (messages/s, messages)."""
    try:
        rate, count = text.split(":")
        r, c = float(rate), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RATE:COUNT, got {text!r}") from None
    if r <= 0 or c <= 0:
        raise argparse.ArgumentTypeError("RATE and COUNT must be > 0")
    return r, c


def replica_argv(
    system: str, port: int, name: str, redis_url: str, nats_url: str | None
) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if system.startswith("limpet"):
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
        broker = redis_url if system == "limpet-redis" else str(nats_url)
        return [
            sys.executable,
            "-m",
            "limpet",
            "hub",
            "--listen",
            f"127.0.0.1:{port}",
            "--broker",
            broker,
            "--name",
            name,
        ], env
    if system == "python-socketio":
        return [sys.executable, str(HERE / "pysio_server.py"), str(port), redis_url, name], env
    return ["node", str(NODE_DIR / "server.mjs"), str(port), redis_url, name], env


def nats_broker_available() -> bool:
    code = "import limpet.hub.brokers.nats"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0
    )


def run_load(
    urls: list[str], pids: list[int], args: argparse.Namespace, sc: Scenario, logdir: Path, tag: str
) -> dict[str, Any]:
    cfg = {
        "urls": urls,
        "pids": pids,
        "subscribers": args.subscribers,
        "channels": sc.channels,
        "publishers": args.publishers,
        "phases": [vars(ph) for ph in sc.phases],
        "drainSeconds": args.drain,
        "settleSeconds": args.settle,
        "storm": sc.storm,
        "channelPrefix": f"bench-{args.run_id}-{sc.name}-",
    }
    budget = (
        120
        + args.settle
        + sum(ph.messages / ph.rate + (ph.drain or args.drain) for ph in sc.phases)
    )
    with open(logdir / f"load-{tag}.log", "wb") as err:
        out = subprocess.run(
            ["node", str(NODE_DIR / "load.mjs"), json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=budget,
            cwd=NODE_DIR,
            start_new_session=True,
        )
    lines = out.stdout.decode().strip().splitlines()
    if not lines:
        return {"error": f"load generator printed nothing (exit {out.returncode})"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def redis_cli_flush(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        s.recv(64)


def bench_system(
    system: str,
    args: argparse.Namespace,
    scenarios: list[Scenario],
    procs: Procs,
    redis_url: str,
    redis_port: int | None,
    nats_url: str | None,
    logdir: Path,
) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "label": LABELS[system], "scenarios": {}}
    for sc in scenarios:
        # Fresh replicas and (our own) Redis emptied per scenario: no state carried over. A
        # given broker is never flushed: the scenario's channel names are its own instead.
        if redis_port is not None:
            redis_cli_flush(redis_port)
        ports = [free_port() for _ in range(3)]
        started = []
        try:
            for i, port in enumerate(ports):
                argv, env = replica_argv(system, port, f"r{i + 1}", redis_url, nats_url)
                started.append(procs.start(f"{system}-{sc.name}-r{i + 1}", argv, env))
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            for url, proc in zip(urls, started, strict=True):
                wait_http(url, proc)
            spy = None
            if args.profile and system.startswith("limpet"):
                # Sample replica 1 for the whole load (py-spy writes collapsed stacks on SIGINT).
                out_file = logdir / f"profile-{system}-{sc.name}.txt"
                spy = subprocess.Popen(
                    [
                        args.profile,
                        "record",
                        "--pid",
                        str(started[0].pid),
                        "--format",
                        "raw",
                        "--rate",
                        "200",
                        "--nonblocking",
                        "-o",
                        str(out_file),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # so Procs can stop it as a group like the rest
                )
                procs.procs.append(spy)
            t0 = time.monotonic()
            print(f"  {LABELS[system]}: {sc.name} ...", end="", flush=True)
            res = run_load(urls, [p.pid for p in started], args, sc, logdir, f"{system}-{sc.name}")
            res["wallSeconds"] = round(time.monotonic() - t0, 1)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(10)
            crashed = [i + 1 for i, p in enumerate(started) if p.poll() is not None]
            if crashed:
                res["error"] = f"replica(s) {crashed} exited during the run"
            print(
                " "
                + (
                    res.get("error")
                    or "; ".join(
                        f"{name} {r['deliveredPerSecond']:.0f}/s p50 {fmt(r['latencyMs']['p50'])} ms "
                        f"p99 {fmt(r['latencyMs']['p99'])} ms ({r['delivered']}/{r['expected']})"
                        for name, r in res["phases"].items()
                    )
                ),
                flush=True,
            )
        except Exception as exc:  # report the failure in the table, carry on with the others
            res = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  {LABELS[system]}: {sc.name}: {res['error']}", flush=True)
        finally:
            procs.stop(started)
        out["scenarios"][sc.name] = res
    return out


def fmt(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, int | float) else "-"


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "node": node,
        "platform": platform.platform(),
    }


def ratio(a: Any, b: Any) -> float | None:
    return (
        round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def table(report: dict[str, Any]) -> str:
    rows = [
        (
            "system",
            "scenario",
            "delivered/s",
            "sat p50/p99 ms",
            "steady p50/p99 ms",
            "delivered",
            "cpu ms/1k",
            "setup s",
            "dropped",
            "lost",
            "sub refused",
        )
    ]
    for s in report["systems"]:
        for name, r in s["scenarios"].items():
            if r.get("error") or "phases" not in r:
                rows.append((s["label"], name, "n/a", r.get("error", "")[:70], *[""] * 7))
                continue
            # the capacity phase: "saturate", or the storm's only phase
            sat = r["phases"].get("saturate") or list(r["phases"].values())[-1]
            steady = r["phases"].get("steady", {})
            got = sum(ph["delivered"] for ph in r["phases"].values())
            want = sum(ph["expected"] for ph in r["phases"].values())
            rows.append(
                (
                    s["label"],
                    name,
                    f"{sat.get('deliveredPerSecond', 0):.0f}",
                    f"{fmt(sat['latencyMs']['p50'])}/{fmt(sat['latencyMs']['p99'])}" if sat else "",
                    f"{fmt(steady['latencyMs']['p50'])}/{fmt(steady['latencyMs']['p99'])}"
                    if steady
                    else "",
                    f"{got}/{want}",
                    fmt(sat.get("replicaCpuMsPer1000")),
                    f"{r['setupSeconds'] + r['settleSeconds']:.1f}",
                    # subscribers the servers disconnected (the load generator does not reconnect)
                    str(sum((r.get("disconnects") or {}).values())),
                    # only the storm waits until deliveries stop: elsewhere a shortfall at
                    # the end of --drain may be a backlog, shown in "delivered"
                    str(sum(ph["expected"] - ph["delivered"] for ph in r["phases"].values()))
                    if r.get("storm")
                    else "-",
                    str((r.get("storm") or {}).get("failed", "-")),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, rs in report["ratios"].items():
        lines.append(
            f"{name}: " + ", ".join(f"{k} {v if v is not None else 'n/a'}" for k, v in rs.items())
        )
    return "\n".join(lines)


def capacity(phases: dict[str, Any]) -> dict[str, Any]:
    """The phase that measures capacity: "saturate", else the last one (the storm's)."""
    if not phases:
        return {}
    result: dict[str, Any] = phases.get("saturate") or list(phases.values())[-1]
    return result


def ratios(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """limpet / baseline: delivered/s at saturation (higher is better), CPU ms per 1,000
    deliveries and steady p99 (lower is better)."""
    by = {s["system"]: s["scenarios"] for s in report["systems"]}
    out: dict[str, dict[str, Any]] = {}
    for limpet in ("limpet-redis", "limpet-nats"):
        for other in ("python-socketio", "node-socketio"):
            if limpet not in by or other not in by:
                continue
            rs: dict[str, Any] = {}
            for sc, r in by[limpet].items():
                mine = r.get("phases") or {}
                theirs = by[other].get(sc, {}).get("phases") or {}
                rs[f"{sc} delivered/s"] = ratio(
                    capacity(mine).get("deliveredPerSecond"),
                    capacity(theirs).get("deliveredPerSecond"),
                )
                rs[f"{sc} cpu/1k"] = ratio(
                    capacity(mine).get("replicaCpuMsPer1000"),
                    capacity(theirs).get("replicaCpuMsPer1000"),
                )
                if "steady" not in mine:
                    continue
                rs[f"{sc} steady p99"] = ratio(
                    mine.get("steady", {}).get("latencyMs", {}).get("p99"),
                    theirs.get("steady", {}).get("latencyMs", {}).get("p99"),
                )
            out[f"{limpet}/{other}"] = rs
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument(
        "--publishers", type=int, default=3, help="publishing sockets, spread over replicas"
    )
    p.add_argument(
        "--many-channels", type=int, default=100, help="channels in the many-channels scenario"
    )
    p.add_argument(
        "--one-steady",
        type=rate_count,
        default="5:20",
        metavar="RATE:COUNT",
        help="one channel, steady phase: messages/s and messages",
    )
    p.add_argument("--one-saturate", type=rate_count, default="200:100", metavar="RATE:COUNT")
    p.add_argument("--many-steady", type=rate_count, default="200:600", metavar="RATE:COUNT")
    p.add_argument("--many-saturate", type=rate_count, default="5000:5000", metavar="RATE:COUNT")
    p.add_argument(
        "--storm-messages",
        type=rate_count,
        default="200:100",
        metavar="RATE:COUNT",
        help="subscribe storm: messages after every subscriber subscribed at once",
    )
    p.add_argument(
        "--storm-drain",
        type=float,
        default=60,
        help="subscribe storm: longest wait for deliveries after the last publish; it ends "
        "earlier once everything arrived or nothing has for 5 s",
    )
    p.add_argument(
        "--scenarios",
        default="one-channel,many-channels,subscribe-storm",
        help="comma-separated subset of one-channel,many-channels,subscribe-storm",
    )
    p.add_argument(
        "--broker",
        action="append",
        default=[],
        metavar="URL",
        help="use this broker instead of starting one (repeatable: one redis URL and/or one "
        "nats:// URL); the redis URL serves limpet-redis and both baselines",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=10,
        help="seconds to wait for deliveries after a phase's last publish",
    )
    p.add_argument(
        "--settle", type=float, default=15, help="longest wait for a quiet server after subscribing"
    )
    p.add_argument(
        "--profile",
        metavar="PY_SPY",
        default=None,
        help="path of a py-spy binary: sample limpet replica 1 in every scenario",
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of " + ",".join(SYSTEMS),
    )
    p.add_argument(
        "--json",
        default=str(ROOT / "bench" / "results" / "hub.json"),
        help="where to write the results",
    )
    args = p.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}")
    if args.subscribers < 1 or args.many_channels < 1 or args.publishers < 1:
        p.error("--subscribers, --many-channels and --publishers must be >= 1")
    given_redis = given_nats = None
    for url in args.broker:
        scheme = url.partition("://")[0]
        if not scheme or scheme == url:
            p.error(f"--broker {url!r}: expected a URL such as redis://HOST:PORT")
        if scheme in ("nats", "tls"):
            given_nats = url
        else:  # redis, rediss, unix, or a scheme a later limpet knows (its hub checks it)
            given_redis = url
    wanted = [s for s in args.scenarios.split(",") if s]
    for sc_name in wanted:
        if sc_name not in ("one-channel", "many-channels", "subscribe-storm"):
            p.error(f"unknown scenario {sc_name!r}")
    args.run_id = f"{int(time.time()) % 100000:05d}"
    for tool in ("node",) + (() if given_redis else ("redis-server",)):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found on PATH")
    if not (NODE_DIR / "node_modules").is_dir():
        p.error(f"run `npm install` in {NODE_DIR} first")

    def phases(steady: tuple[float, int], saturate: tuple[float, int]) -> list[Phase]:
        return [Phase("steady", *steady), Phase("saturate", *saturate)]

    scenarios = [
        Scenario("one-channel", 1, phases(args.one_steady, args.one_saturate)),
        Scenario(
            f"{args.many_channels}-channels",
            args.many_channels,
            phases(args.many_steady, args.many_saturate),
        ),
        # a shortfall here must be a loss, not a backlog: wait while deliveries keep coming
        Scenario(
            "subscribe-storm",
            1,
            [Phase("messages", *args.storm_messages, drain=args.storm_drain, quiet=5.0)],
            storm=True,
        ),
    ]
    keep = {"one-channel": 0, "many-channels": 1, "subscribe-storm": 2}
    scenarios = [scenarios[keep[name]] for name in keep if name in wanted]
    logdir = ROOT / "bench" / "results" / "hub-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    procs = Procs(logdir)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    report: dict[str, Any] = {"machine": machine(), "args": vars(args), "systems": []}
    t0 = time.monotonic()
    try:
        redis_port: int | None = None
        redis_url = given_redis or ""
        if not given_redis:
            redis_port = free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}"
            redis = procs.start(
                "redis",
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            )
            wait_port(redis_port, redis)
        nats_url: str | None = given_nats
        if "limpet-nats" in systems and not nats_broker_available():
            report["systems"].append(
                {
                    "system": "limpet-nats",
                    "label": LABELS["limpet-nats"],
                    "scenarios": {
                        sc.name: {"error": "n/a: no nats broker in this limpet build"}
                        for sc in scenarios
                    },
                }
            )
            print("limpet hub (nats): n/a (the nats broker is not in this limpet build)")
            systems.remove("limpet-nats")
        if "limpet-nats" in systems and given_nats is None:
            nats_bin = shutil.which(
                "nats-server", path=str(Path(sys.executable).parent)
            ) or shutil.which("nats-server")
            if nats_bin is None:
                p.error("nats-server not found")
            else:
                nats_port = free_port()
                nats = procs.start(
                    "nats",
                    [
                        nats_bin,
                        "-a",
                        "127.0.0.1",
                        "-p",
                        str(nats_port),
                        "-js",
                        "-sd",
                        str(logdir / "nats-store"),
                    ],
                )
                wait_port(nats_port, nats)
                nats_url = f"nats://127.0.0.1:{nats_port}"
        for system in systems:
            report["systems"].append(
                bench_system(
                    system, args, scenarios, procs, redis_url, redis_port, nats_url, logdir
                )
            )
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process", file=sys.stderr)
        return 130
    finally:
        procs.close()
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["wallSeconds"] = round(time.monotonic() - t0, 1)
    report["ratios"] = ratios(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print(f"\n{report['wallSeconds']}s in all; JSON in {args.json}; logs in {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
