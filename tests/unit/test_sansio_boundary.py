"""The sans-IO core must not import I/O: import each core module with asyncio/socket blocked."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

from tests.support.procs import SRC, limpet_env

CORE_PACKAGES = [
    "limpet.affinity",
    "limpet.balancing",
    "limpet.pool",
    "limpet.k8s",
    "limpet.hub.channels",
    "limpet.proxy.wire",
    # single sans-IO modules that live beside the edges they serve
    "limpet.proxy.states",
    "limpet.proxy.h2.limits",
    "limpet.proxy.h2.guard",
    "limpet.proxy.h2.core",
    "limpet.proxy.h2.messages",
    "limpet.admin.guard",
    "limpet.client.core",
    "limpet.client.backoff",
    "limpet.hub.admission",
    "limpet.hub.fragments",
    "limpet.hub.brokers.urls",
    "limpet.hub.hooks",
    "limpet.hub.events",
    "limpet.hub.limits",
    "limpet.hub.namespaces",
    "limpet.tools.spread",
]
BLOCKED = [
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "uvloop",
    "redis",
    "nats",
    "aiohttp",
    "subprocess",
]


def core_modules() -> list[str]:
    names: list[str] = []
    for package in CORE_PACKAGES:
        path = SRC / package.replace(".", "/")
        if path.is_dir():
            names.append(package)
            names += [
                f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)]) if m.name != "cli"
            ]
        elif path.with_suffix(".py").exists():
            names.append(package)
    return names


@pytest.mark.parametrize("module", core_modules())
def test_core_module_imports_no_io(module: str) -> None:
    code = f"import sys\nfor name in {BLOCKED!r}:\n    sys.modules[name] = None\nimport {module}\n"
    result = subprocess.run(
        [sys.executable, "-c", code], env=limpet_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, f"{module} imports I/O:\n{result.stderr}"


def test_boundary_check_can_fail() -> None:
    code = "import sys\nsys.modules['asyncio'] = None\nimport limpet.runtime\n"
    result = subprocess.run(
        [sys.executable, "-c", code], env=limpet_env(), capture_output=True, text=True
    )
    assert result.returncode != 0
