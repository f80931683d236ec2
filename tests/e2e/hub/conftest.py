"""Node peers: install the official socket.io client for tests/e2e/js once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.support.procs import which_or_skip

JS = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture(scope="session")
def node_client_dir() -> Path:
    """tests/e2e/js with socket.io-client installed (npm install on first use)."""
    which_or_skip("node")
    if not (JS / "node_modules" / "socket.io-client").is_dir():
        npm = which_or_skip("npm")
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return JS
