"""The hub's CPU per delivery, this checkout against another source tree (e.g. main before the
hooks), alternating, in one run: does the delivery path cost what it did?

    git archive main src | tar -x -C /tmp/base && python bench/hub/fanout_ab.py /tmp/base/src

Each round starts one hub (memory broker) from each tree and sends the same publishes to the same
subscribers (bench/hub/hooks.py's ``deliveries``); the hub's CPU from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from common import ROOT, free_port, loadavg, wait_port  # noqa: E402
from hooks import deliveries  # noqa: E402


def start(src: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "limpet", "hub", "--listen", f"127.0.0.1:{port}"],
        env=dict(os.environ, PYTHONPATH=src),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_port(port, proc)
    return f"http://127.0.0.1:{port}", proc


def main() -> None:
    base = sys.argv[1]
    rounds, subscribers, messages = 3, 20, 2500  # under the default 1000/s publish limit's burst
    trees = {"base": base, "this": str(ROOT / "src")}
    got: dict[str, list[float]] = {name: [] for name in trees}
    print(f"load average before: {loadavg()}  (shared machine)")
    for _ in range(rounds):
        for name, src in trees.items():
            url, proc = start(src)
            try:
                used = asyncio.run(deliveries(url, proc.pid, subscribers, messages))
            finally:
                proc.terminate()
                proc.wait()
            got[name].append(used / (subscribers * messages) * 1e6)
            print(f"{name}: {got[name][-1]:.2f} µs of hub CPU per delivery", flush=True)
    for name, values in got.items():
        print(f"{name}: median {sorted(values)[len(values) // 2]:.2f} µs per delivery")


if __name__ == "__main__":
    main()
