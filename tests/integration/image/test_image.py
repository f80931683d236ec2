"""The container image (Containerfile, scripts/image): built from Debian and PyPI packages, then
`limpet hub` and `limpet proxy` started from it answer on loopback.

Skipped when buildah or mmdebstrap is missing. The image is run with ``buildah run --isolation
chroot`` (the image's own filesystem, user and Python, on the host network): it needs no OCI
runtime, so it also works where podman cannot set a container's rlimits (inside a container).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.procs import ROOT, Procs, free_port, wait_listening

pytestmark = pytest.mark.image

TAG = "localhost/limpet:test"


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install buildah mmdebstrap)")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image"), "--tag", TAG],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    yield TAG
    subprocess.run(["buildah", "rmi", TAG], capture_output=True, timeout=60)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Working containers made by a test, removed after it (after ``procs`` stopped them:
    autouse-free fixtures requested first are torn down last)."""
    made: list[str] = []
    yield made
    for ctr in made:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, timeout=60)


def in_image(containers: list[str], procs: Procs, image: str, *args: str, port: int) -> None:
    """``limpet ARGS`` in a working container of ``image``; waits until ``port`` listens."""
    ctr = subprocess.run(
        ["buildah", "from", "--pull-never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    containers.append(ctr)
    proc = procs.start(
        ["buildah", "run", "--isolation", "chroot", "--network", "host", ctr, "--",
         "limpet", *args],
    )  # fmt: skip
    wait_listening("127.0.0.1", port, proc=proc, timeout=60)


def test_hub_and_proxy_answer_from_the_image(
    containers: list[str], procs: Procs, image: str
) -> None:
    hub, proxy = free_port(), free_port()
    in_image(containers, procs, image, "hub", "--listen", f"127.0.0.1:{hub}", "--name", "hub-in-image",
             port=hub)  # fmt: skip
    in_image(containers, procs, image, "proxy", "--listen", f"127.0.0.1:{proxy}", "--secret-file",
             "/etc/hostname", "--backend", f"hub=http://127.0.0.1:{hub}", port=proxy)  # fmt: skip
    req = urllib.request.Request(
        f"http://127.0.0.1:{proxy}/api/channels/image.test/messages",
        data=json.dumps({"data": "from the image"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201 and json.loads(resp.read())["offset"] == 1
        assert "limpet=" in (resp.headers.get("Set-Cookie") or "")  # through the proxy
    url = f"http://127.0.0.1:{proxy}/api/channels/image.test/messages?since=0"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert [m["data"] for m in json.loads(resp.read())["messages"]] == ["from the image"]


def test_the_image_runs_as_an_unprivileged_user(image: str) -> None:
    config = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}", image],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert config.stdout.strip() == "10001"
