"""The benchmark harnesses' own logic, without running a benchmark: a missing peer is reported
and skipped (never a crash), figures are parsed and tabulated, /proc is read right."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def load(rel: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run() -> ModuleType:
    return load("bench/proxy/run.py", "bench_proxy_run")


@pytest.fixture(scope="module")
def hub() -> ModuleType:
    return load("bench/hub/run.py", "bench_hub_run")


@pytest.fixture(scope="module")
def common() -> ModuleType:
    return load("bench/common.py", "bench_common")


PEERS = ("haproxy", "nginx", "envoy", "traefik")


def ctx(run: ModuleType, tmp_path: Path) -> Any:
    return run.Ctx(run.Procs(tmp_path), [1001, 1002, 1003], "0")


@pytest.mark.parametrize("key", PEERS)
def test_a_peer_that_is_not_installed_is_not_available(
    run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setattr(run, "which", lambda tool: None)
    contender = next(c for c in run.CONTENDERS if c.key == key)
    with pytest.raises(run.NotAvailable, match="not installed"):
        contender.argv(ctx(run, tmp_path), 9000)


@pytest.mark.parametrize("key", PEERS)
def test_an_installed_peer_gets_its_config_on_the_backends(
    run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setattr(run, "which", lambda tool: f"/opt/{tool}")
    contender = next(c for c in run.CONTENDERS if c.key == key)
    argv = contender.argv(ctx(run, tmp_path), 9000)
    assert argv[0] == f"/opt/{key}"
    configs = "".join(p.read_text() for p in tmp_path.iterdir())
    assert "9000" in configs and all(str(p) in configs for p in (1001, 1002, 1003))
    assert "127.0.0.1" in configs and "0.0.0.0" not in configs  # loopback only


def test_the_table_reports_a_missing_peer_and_ratios_to_haproxy(run: ModuleType) -> None:
    base = {"rps": 40000.0, "p99_ms": 8.0, "cpu_us_per_request": 14.0, "cpu_share": 0.6}
    results = [
        {"key": "haproxy", "label": "HAProxy", "note": "", "sticky": True, **base},
        {
            "key": "limpet-cookie",
            "label": "limpet",
            "note": "",
            "sticky": True,
            "rps": 20000.0,
            "p99_ms": 16.0,
            "cpu_us_per_request": 42.0,
            "cpu_share": 0.7,
        },
        {"key": "envoy", "label": "Envoy", "note": "envoy not installed", "na": True},
    ]
    table = run.report(results)
    assert "| limpet | 20,000 | 16.00 | 42.0 | 70% | 0.50 | 3.00 | 2.00 | yes |" in table
    assert "| Envoy | not available | envoy not installed |" in table


@pytest.mark.parametrize(
    ("text", "ms"), [("850.00us", 0.85), ("6.60ms", 6.6), ("1.20s", 1200.0), ("1.00m", 60000.0)]
)
def test_wrk_latencies_are_read_in_milliseconds(run: ModuleType, text: str, ms: float) -> None:
    assert run.parse_ms(text) == pytest.approx(ms)


def test_cpu_and_memory_of_a_process_come_from_proc(common: ModuleType) -> None:
    me = os.getpid()
    assert me in common.process_tree(me)
    assert common.rss_bytes(me) > 1_000_000
    start = common.cpu_seconds(me)
    for _ in range(10_000_000):  # bounded: spin until the kernel has counted a tick
        if common.cpu_seconds(me) > start:
            break
    assert common.cpu_seconds(me) > start


def test_the_storm_reports_lost_and_refused_the_others_do_not(hub: ModuleType) -> None:
    phase = {
        "deliveredPerSecond": 1000.0,
        "latencyMs": {"p50": 1.0, "p99": 2.0},
        "replicaCpuMsPer1000": 20.0,
    }
    storm = {
        "storm": {"subscribes": 10, "failed": 3},
        "phases": {"messages": {**phase, "expected": 700, "delivered": 690}},
        "setupSeconds": 1.0,
        "settleSeconds": 1.0,
    }
    plain = {
        "phases": {"saturate": {**phase, "expected": 700, "delivered": 600}},
        "setupSeconds": 1.0,
        "settleSeconds": 1.0,
    }
    report = {
        "systems": [{"label": "x", "scenarios": {"subscribe-storm": storm, "one": plain}}],
        "ratios": {},
    }
    lines = hub.table(report).splitlines()
    storm_row = next(line for line in lines if "subscribe-storm" in line).split()
    plain_row = next(line for line in lines if line.startswith("x") and " one " in line).split()
    assert storm_row[-2:] == ["10", "3"]  # lost, refused
    assert plain_row[-2:] == ["-", "-"]  # a shortfall at --drain may be a backlog
