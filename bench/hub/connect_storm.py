"""Connect storm: N official socket.io clients connect to one hub replica at the same moment and
each subscribes to one channel (a replica died and its clients came here). Per system and size:
the time until every client was subscribed, the replica's CPU per connect + subscribe (from
/proc), its memory per subscribed connection (RSS after - RSS before, over N), and the clients'
connect errors (timeouts, try-again-later refusals).

Systems: ``limpet`` (limpet hub on redis-server, admission control as configured) and ``node``
(Node socket.io + @socket.io/redis-adapter, bench/hub/node/server.mjs; needs
``(cd bench/hub/node && npm install)``). The clients are tests/e2e/js/hub_connect_storm.js,
split over ``--procs`` node processes.

    python bench/hub/connect_storm.py --sizes 2000,6000,10000 --systems limpet,node
    python bench/hub/connect_storm.py --sizes 2000 --hub-arg=--max-handshakes=0   # admission off
    python bench/hub/connect_storm.py --systems limpet --src /path/to/other/checkout/src  # before
    python bench/hub/connect_storm.py --systems limpet --profile /tmp/prof   # py-spy, raw stacks

``--profile DIR`` records the limpet replica with ``py-spy record -r 200 -f raw`` (py-spy on
PATH or beside this interpreter) from just before the storm until every client is subscribed,
into ``DIR/limpet-N.txt``; ``bench/hub/profile_shares.py`` sums a file into inclusive shares.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
from common import Procs, cpu_seconds, free_port, limpet_argv, limpet_env, raise_nofile, rss_bytes  # noqa: E402

STORM_JS = ROOT / "tests" / "e2e" / "js" / "hub_connect_storm.js"


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/socket.io/?EIO=4&transport=polling", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def storm(
    url: str, size: int, procs: int, transports: str, timeout_ms: int, deadline_s: float
) -> tuple[dict[str, Any], list[subprocess.Popen[bytes]]]:
    """Run the clients; sum what each process reports. The clients stay connected until the
    returned processes' stdin is closed (``release``)."""
    channel = f"storm-{uuid.uuid4().hex[:8]}"
    share = [size // procs + (1 if i < size % procs else 0) for i in range(procs)]
    runs = [
        subprocess.Popen(
            [
                "node",
                str(STORM_JS),
                url,
                channel,
                str(n),
                transports,
                str(timeout_ms),
                str(int(deadline_s * 1000)),
                "hold",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=STORM_JS.parent,
        )
        for n in share
        if n
    ]
    total: dict[str, Any] = {"subscribed": 0, "elapsed_ms": 0, "errors": {}, "examples": []}
    for run in runs:
        assert run.stdout is not None
        line = run.stdout.readline()  # bounded: each process reports by its deadline
        if not line:
            raise RuntimeError("a client process exited without its report")
        report = json.loads(line)
        total["subscribed"] += report["subscribed"]
        total["elapsed_ms"] = max(total["elapsed_ms"], report["elapsed_ms"])
        for k, v in report["errors"].items():
            total["errors"][k] = total["errors"].get(k, 0) + v
        total["examples"] += report["examples"]
    return total, runs


def release(runs: list[subprocess.Popen[bytes]]) -> None:
    """Let the client processes close their connections and exit."""
    for run in runs:
        assert run.stdin is not None
        run.stdin.close()
    for run in runs:
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()


def py_spy() -> str:
    """py-spy on PATH or beside this interpreter (``pip install py-spy``)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or str(beside)


def start_profile(outdir: str, name: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` until ``stop_profile``; raw (collapsed) stacks with line numbers off,
    so that samples sum by function."""
    exe = py_spy()
    Path(outdir).mkdir(parents=True, exist_ok=True)
    out = Path(outdir) / f"{name}.txt"
    spy = subprocess.Popen(
        [exe, "record", "-r", "200", "-f", "raw", "--nolineno", "-p", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the storm starts
    return spy


def stop_profile(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def run_one(system: str, size: int, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    procs = Procs(logdir)
    try:
        rport = free_port()
        procs.start(
            "redis",
            ["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
            port=rport,
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        redis = f"redis://127.0.0.1:{rport}"
        if system == "limpet":
            argv = limpet_argv(
                "hub", "--listen", f"127.0.0.1:{port}", "--broker", redis, *args.hub_arg
            )
            env = limpet_env()
            if args.src:  # another checkout's limpet (a before/after comparison)
                env["PYTHONPATH"] = str(Path(args.src).resolve())
            server = procs.start(f"limpet-{size}", argv, env=env)
        else:
            server = procs.start(
                f"node-{size}", ["node", str(HERE / "node" / "server.mjs"), str(port), redis, "n1"]
            )
        wait_ready(url, server)
        time.sleep(0.5)
        spy = start_profile(args.profile, f"{system}-{size}", server.pid) if args.profile else None
        cpu0, rss0 = cpu_seconds(server.pid), rss_bytes(server.pid)
        result, runs = storm(url, size, args.procs, args.transports, args.timeout_ms, args.deadline)
        try:  # measured with every client still connected and subscribed
            cpu = cpu_seconds(server.pid) - cpu0
            rss = rss_bytes(server.pid) - rss0
        finally:
            if spy is not None:
                stop_profile(spy)
            release(runs)
        log = (
            (logdir / f"{system}-{size}.log").read_text(errors="replace")
            if system == "limpet"
            else ""
        )
        return {
            "system": system,
            "size": size,
            **result,
            "cpu_ms_per_client": round(1000 * cpu / size, 3),
            "kb_per_client": round(rss / size / 1024, 1),
            "tracebacks": log.count("Traceback"),
            "load": round(os.getloadavg()[0], 1),
        }
    finally:
        procs.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,6000,10000")
    parser.add_argument("--systems", default="limpet,node")
    parser.add_argument("--procs", type=int, default=4, help="node client processes")
    parser.add_argument("--transports", default="polling,websocket")
    parser.add_argument(
        "--timeout-ms", type=int, default=20000, help="the clients' connect timeout"
    )
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds to wait for all")
    parser.add_argument(
        "--hub-arg", action="append", default=[], help="extra `limpet hub` argument"
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--src", default=None, help="run limpet from this src/ (e.g. main's)")
    parser.add_argument("--profile", default=None, help="py-spy the replica into this folder")
    args = parser.parse_args()
    if shutil.which("node") is None or shutil.which("redis-server") is None:
        print("needs node and redis-server", file=sys.stderr)
        return 2
    if args.profile and not Path(py_spy()).exists():
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    raise_nofile(65536)
    logdir = Path(tempfile.mkdtemp(prefix="connect-storm-"))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for system in args.systems.split(","):
            row = run_one(system, size, args, logdir)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| system | clients | subscribed | time to all (s) | connects + subscribes / s "
        "| CPU ms per client | KB per client | timeouts | refused | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        e = r["errors"]
        print(
            f"| {r['system']} | {r['size']} | {r['subscribed']} | {r['elapsed_ms'] / 1000:.1f} | "
            f"{r['subscribed'] * 1000 / max(1, r['elapsed_ms']):.0f} | "
            f"{r['cpu_ms_per_client']} | {r['kb_per_client']} | {e.get('timeout', 0)} | "
            f"{e.get('refused', 0)} | {r['load']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
