"""A malformed config file against the real `limpet proxy`: at start exit 2 with one line per
error (file, line, key), on SIGHUP and POST /reload refused (400), counted, no traceback; a
file still being written is not applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.proxy.conftest import ADMIN_TOKEN, Proxy
from tests.support.procs import Procs, free_port, limpet_env, wait_listening

GOOD = "pools:\n  web:\n    backends:\n      - {id: a, url: '127.0.0.1:9'}\n"
TWO = GOOD + "      - {id: b, url: '127.0.0.1:10'}\n"
EMPTY_MODE = GOOD + "    affinity:\n      mode:\n"  # line 6


def run_proxy(config: Path) -> subprocess.CompletedProcess[str]:
    port = free_port()
    argv = [sys.executable, "-m", "limpet", "proxy", "--config", str(config)]
    argv += ["--listen", f"127.0.0.1:{port}"]
    return subprocess.run(
        argv, env=limpet_env(), capture_output=True, text=True, timeout=30, check=False
    )


def test_an_empty_value_at_start_is_exit_2_and_one_line(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(EMPTY_MODE)
    done = run_proxy(config)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"limpet proxy: error: {config}:6: pools.web.affinity.mode: empty value (expected str)\n"
    )


def test_two_wrong_keys_are_both_reported(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(GOOD + "    colour: red\ntimeouts: {conect: 1}\n")
    done = run_proxy(config)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(f"limpet proxy: error: {config}:5: pools.web.colour: ")
    assert lines[1].startswith(f"limpet proxy: error: {config}:6: timeouts.conect: ")


def start(procs: Procs, config: Path) -> Proxy:
    port, admin = free_port(), free_port()
    proc = procs.limpet(
        "proxy", "--config", str(config), "--listen", f"127.0.0.1:{port}",
        "--admin", f"127.0.0.1:{admin}", "--no-health", "--log-level", "warning",
        wait_for=("127.0.0.1", port), env={"LIMPET_ADMIN_TOKEN": ADMIN_TOKEN},
    )  # fmt: skip
    wait_listening("127.0.0.1", admin, proc=proc)
    return Proxy("127.0.0.1", port, admin, proc)


def errors_counted(proxy: Proxy) -> float:
    for line in proxy.metrics().splitlines():
        if line.startswith('limpet_config_reloads_total{result="error"}'):
            return float(line.split()[-1])
    return 0.0


def ids(proxy: Proxy) -> list[str]:
    return [b["id"] for b in proxy.status()["pools"][0]["backends"]]


def test_an_empty_value_on_sighup_and_reload_is_refused_and_counted(procs: Procs) -> None:
    config = procs.tmp / "proxy.yaml"
    config.write_text(GOOD)
    proxy = start(procs, config)
    config.write_text(EMPTY_MODE)
    os.kill(proxy.proc.pid, signal.SIGHUP)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while errors_counted(proxy) < 1:  # the status endpoint says when the reload ran
        assert time.monotonic() < deadline, procs.output(proxy.proc)  # type: ignore[arg-type]
        time.sleep(0.05)
    code, body = proxy.admin("POST", "/reload")
    assert code == 400, body
    assert f"{config}:6: pools.web.affinity.mode: empty value" in body
    assert errors_counted(proxy) == 2
    log = procs.output(proxy.proc)  # type: ignore[arg-type]
    assert "Traceback" not in log and "ParserError" not in log, log
    assert log.count("pools.web.affinity.mode: empty value") == 2, log
    # twin: the same proxy applies a good file
    config.write_text(TWO)
    code, body = proxy.admin("POST", "/reload")
    assert code == 200, body
    assert ids(proxy) == ["a", "b"]


def test_a_file_still_being_written_is_not_applied(procs: Procs) -> None:
    config = procs.tmp / "proxy.yaml"
    config.write_text(TWO)
    proxy = start(procs, config)
    with config.open("w") as writer:  # rewritten in place, caught after its first backend
        writer.write(GOOD)
        writer.flush()
        code, body = proxy.admin("POST", "/reload")
        assert code == 400, body
        assert "open for writing by another process" in body
        assert ids(proxy) == ["a", "b"]  # the running config stays whole
        writer.write(TWO[len(GOOD) :])
    code, body = proxy.admin("POST", "/reload")  # twin: the finished file applies
    assert code == 200, body
    assert ids(proxy) == ["a", "b"]
    assert errors_counted(proxy) == 1


def test_a_mistyped_backend_url_is_refused_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "limpet", "proxy", "--listen", f"127.0.0.1:{free_port()}",
         "--backend", "a=http//127.0.0.1:9001"],
        env=limpet_env(), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("limpet proxy: error: backend URL 'http//127.0.0.1:9001': ")
    assert "not a host name or IP address" in done.stderr and "Traceback" not in done.stderr
