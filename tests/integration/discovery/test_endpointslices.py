"""EndpointSlice discovery through kubernetes_asyncio against a server speaking the real
list/watch protocol: add, ready -> terminating, delete, disconnect + resume, 410 relist."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from limpet.discovery.base import Endpoint, Snapshot
from limpet.discovery.kubernetes import EndpointSliceDiscovery, read_service_affinity
from limpet.errors import DiscoveryError
from tests.integration.discovery.fake_apiserver import (
    BACKEND_CONFIG,
    DRAINING,
    READY,
    FakeApiServer,
    endpoint_slice,
    put_gke_service,
)


@pytest.fixture
def kubeconfig(server: FakeApiServer, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(server.kubeconfig())
    return str(path)


def discovery(kubeconfig: str, **kwargs: object) -> EndpointSliceDiscovery:
    return EndpointSliceDiscovery(
        "default",
        "chat",
        kubeconfig=kubeconfig,
        retry_delay=0.05,
        **kwargs,  # type: ignore[arg-type]
    )


async def next_snapshot(it: AsyncIterator[Snapshot]) -> Snapshot:
    return await asyncio.wait_for(it.__anext__(), timeout=10)


def pods(snapshot: Snapshot) -> list[tuple[str, str, bool, bool]]:
    return [(e.id, e.address, e.ready, e.terminating) for e in snapshot]


async def test_add_drain_delete(server: FakeApiServer, kubeconfig: str) -> None:
    await server.put(endpoint_slice("chat", "chat-a", 3000, [("pod-0", "127.0.0.10", READY)]))
    await server.put(endpoint_slice("other", "other-a", 80, [("x", "127.0.0.99", READY)]))
    it = discovery(kubeconfig).watch()
    assert await next_snapshot(it) == (Endpoint("pod-0", "127.0.0.10:3000"),)
    # a pod joins
    await server.put(
        endpoint_slice(
            "chat", "chat-a", 3000, [("pod-0", "127.0.0.10", READY), ("pod-1", "127.0.0.11", READY)]
        )
    )
    assert [e.id for e in await next_snapshot(it)] == ["pod-0", "pod-1"]
    # pod-0 starts terminating: it drains
    await server.put(
        endpoint_slice(
            "chat",
            "chat-a",
            3000,
            [("pod-0", "127.0.0.10", DRAINING), ("pod-1", "127.0.0.11", READY)],
        )
    )
    assert pods(await next_snapshot(it)) == [
        ("pod-0", "127.0.0.10:3000", False, True),
        ("pod-1", "127.0.0.11:3000", True, False),
    ]
    # a second slice adds a pod; deleting the first slice removes its pods
    await server.put(endpoint_slice("chat", "chat-b", 3000, [("pod-2", "127.0.0.12", READY)]))
    assert [e.id for e in await next_snapshot(it)] == ["pod-0", "pod-1", "pod-2"]
    await server.delete("chat-a")
    assert [e.id for e in await next_snapshot(it)] == ["pod-2"]
    await it.aclose()
    assert len(server.lists()) == 1  # one list, then only watch events
    assert server.watches()[0]["labelSelector"] == "kubernetes.io/service-name=chat"


async def test_disconnect_resumes_from_resource_version(
    server: FakeApiServer, kubeconfig: str
) -> None:
    await server.put(endpoint_slice("chat", "chat-a", 3000, [("pod-0", "127.0.0.10", READY)]))
    it = discovery(kubeconfig).watch()
    await next_snapshot(it)
    await server.put(endpoint_slice("chat", "chat-b", 3000, [("pod-1", "127.0.0.11", READY)]))
    await next_snapshot(it)
    seen = str(server.version)
    await server.disconnect()
    # a change while the watch is down is delivered by the resumed watch, without a relist
    await server.put(endpoint_slice("chat", "chat-c", 3000, [("pod-2", "127.0.0.12", READY)]))
    assert [e.id for e in await next_snapshot(it)] == ["pod-0", "pod-1", "pod-2"]
    await it.aclose()
    assert len(server.lists()) == 1
    assert [w.get("resourceVersion") for w in server.watches()][-1] == seen


async def test_410_gone_relists(server: FakeApiServer, kubeconfig: str) -> None:
    await server.put(endpoint_slice("chat", "chat-a", 3000, [("pod-0", "127.0.0.10", READY)]))
    d = discovery(kubeconfig)
    it = d.watch()
    await next_snapshot(it)
    old = d.resource_version
    # no await that yields between these: the open watch never sees the change, and the
    # history that held it is compacted, so only a relist can find it
    await server.put(endpoint_slice("chat", "chat-a", 3000, [("pod-9", "127.0.0.19", READY)]))
    server.compact()
    await server.disconnect()
    assert [e.id for e in await next_snapshot(it)] == ["pod-9"]
    await it.aclose()
    assert len(server.lists()) == 2
    assert d.relists == 2
    # the watch from the old resourceVersion got 410; the next one resumes from the relist
    assert server.watches()[0]["resourceVersion"] == old
    assert d.resource_version == str(server.version)


async def test_bookmarks_advance_the_resume_point(server: FakeApiServer, kubeconfig: str) -> None:
    await server.put(endpoint_slice("chat", "chat-a", 3000, [("pod-0", "127.0.0.10", READY)]))
    d = discovery(kubeconfig)
    it = d.watch()
    await next_snapshot(it)
    await server.bookmark()
    await server.put(endpoint_slice("chat", "chat-a", 3000, [("pod-1", "127.0.0.11", READY)]))
    await next_snapshot(it)
    assert d.resource_version == str(server.version)
    await it.aclose()


async def test_unauthorized_is_a_clear_error(server: FakeApiServer, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(server.kubeconfig().replace("fake-token", "wrong"))
    with pytest.raises(DiscoveryError, match="401"):
        await next_snapshot(discovery(str(path)).watch())


async def test_missing_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(DiscoveryError, match=r"no Kubernetes config: .*/nope does not exist"):
        await next_snapshot(discovery(str(tmp_path / "nope")).watch())
    (tmp_path / "broken").write_text("x: [\n")
    with pytest.raises(DiscoveryError, match=r"cannot load kubeconfig .*/broken: while parsing"):
        await next_snapshot(discovery(str(tmp_path / "broken")).watch())


async def test_read_service_affinity(server: FakeApiServer, kubeconfig: str) -> None:
    put_gke_service(server.objects, {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]})
    spec, notes = await read_service_affinity("default", "chat", kubeconfig=kubeconfig)
    assert (spec.mode, spec.cookie_name, spec.cookie_ttl) == ("cookie", "GCLB", 600)
    assert any("gke" in n for n in notes) and any("kube-proxy" in n for n in notes)
    # the twin: without the BackendConfig, the Service's own ClientIP affinity applies
    del server.objects[BACKEND_CONFIG]
    spec, _ = await read_service_affinity("default", "chat", kubeconfig=kubeconfig)
    assert spec.mode == "client-ip"
    with pytest.raises(DiscoveryError, match="404"):
        await read_service_affinity("default", "missing", kubeconfig=kubeconfig)


async def test_service_behind_an_httproute_with_session_persistence(
    server: FakeApiServer, kubeconfig: str
) -> None:
    server.objects["/api/v1/namespaces/default/services/chat"] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "chat", "namespace": "default"}, "spec": {"ports": [{"port": 80}]},
    }  # fmt: skip
    spec, notes = await read_service_affinity("default", "chat", kubeconfig=kubeconfig)
    assert spec.mode == "none"  # the twin: no route, no affinity
    route = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/chat"
    server.objects[route] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {"rules": [{
            "backendRefs": [{"name": "chat", "port": 80}],
            "sessionPersistence": {"sessionName": "chat-s", "absoluteTimeout": "2h",
                                   "cookieConfig": {"lifetimeType": "Permanent"}},
        }]},
    }  # fmt: skip
    spec, notes = await read_service_affinity("default", "chat", kubeconfig=kubeconfig)
    assert (spec.mode, spec.cookie_name, spec.cookie_ttl) == ("cookie", "chat-s", 7200)
    assert "Service default/chat: affinity from gateway-api" in notes
    assert "HTTPRoute chat rule 0 sessionPersistence Cookie" in notes


async def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod: KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA, over TLS."""
    import ssl
    import subprocess

    from tests.support.procs import which_or_skip

    openssl = which_or_skip("openssl", "/usr/bin/openssl")
    key, cert = tmp_path / "tls.key", tmp_path / "ca.crt"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=kubernetes", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "token").write_text("fake-token")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake = FakeApiServer()
    await fake.start(ssl_context=context)
    try:
        await fake.put(endpoint_slice("chat", "chat-a", 3000, [("pod-0", "127.0.0.10", READY)]))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(fake.port))
        d = EndpointSliceDiscovery("default", "chat", service_account_dir=str(tmp_path))
        it = d.watch()
        assert [e.id for e in await next_snapshot(it)] == ["pod-0"]
        await it.aclose()
        # the twin: a service-account directory without a token is a clear error
        (tmp_path / "token").unlink()
        with pytest.raises(DiscoveryError, match="in-cluster"):
            await next_snapshot(
                EndpointSliceDiscovery("default", "chat", service_account_dir=str(tmp_path)).watch()
            )
    finally:
        await fake.stop()


async def test_explain_reads_a_live_service(server: FakeApiServer, kubeconfig: str) -> None:
    """`limpet k8s explain --kubernetes-service` as a process, against the API server."""
    import json
    import sys

    from tests.support.procs import limpet_env

    server.objects["/api/v1/namespaces/web/services/chat"] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "chat", "namespace": "web"},
        "spec": {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 900}},
        },
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "limpet", "k8s", "explain", "--format", "json",
        "--kubernetes-service", "web/chat", "--kubeconfig", kubeconfig,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=limpet_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert (result["dialect"], result["spec"]["client_ip_timeout"]) == ("kube-proxy", 900)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "limpet", "k8s", "explain",
        "--kubernetes-service", "web/missing", "--kubeconfig", kubeconfig,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=limpet_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and b"404" in err and b"Traceback" not in err
