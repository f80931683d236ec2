"""A stand-in Kubernetes API server (no apiserver binary runs here) speaking the real protocol.

aiohttp on loopback. It implements what limpet's discovery uses, as the API server does it:
- list: ``GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=...``
  -> an EndpointSliceList with ``metadata.resourceVersion``;
- watch: the same with ``watch=true&resourceVersion=RV``: a chunked stream of JSON lines
  ``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK", "object": ...}`` of the changes after RV, then
  live ones until ``timeoutSeconds``; an RV older than the retained history gets an ``ERROR``
  event carrying a ``Status`` with code 410 (Gone), as the API server sends it;
- reads of Services, BackendConfigs, Ingresses and (absent) Traefik CRDs.
The test drives it: ``put``/``delete`` a slice, ``compact`` history, ``disconnect`` watches.
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from typing import Any

from aiohttp import web

SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
BACKEND_CONFIG = "/apis/cloud.google.com/v1/namespaces/default/backendconfigs/chat-bc"

#: EndpointSlice endpoint conditions of a serving pod and of a pod being terminated.
READY = {"ready": True, "serving": True, "terminating": False}
DRAINING = {"ready": False, "serving": True, "terminating": True}


def put_gke_service(objects: dict[str, Any], service_spec: dict[str, Any]) -> None:
    """Service ``default/chat`` with NEG + a GENERATED_COOKIE BackendConfig (TTL 600 s)."""
    objects["/api/v1/namespaces/default/services/chat"] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "chat",
            "namespace": "default",
            "annotations": {
                "cloud.google.com/neg": '{"ingress": true}',
                "cloud.google.com/backend-config": '{"default": "chat-bc"}',
            },
        },
        "spec": service_spec,
    }
    objects[BACKEND_CONFIG] = {
        "apiVersion": "cloud.google.com/v1",
        "kind": "BackendConfig",
        "metadata": {"name": "chat-bc", "namespace": "default"},
        "spec": {
            "sessionAffinity": {"affinityType": "GENERATED_COOKIE", "affinityCookieTtlSec": 600}
        },
    }


def endpoint_slice(
    service: str, name: str, port: int, endpoints: list[tuple[str, str, dict[str, bool]]]
) -> dict[str, Any]:
    """An EndpointSlice as the API returns it: endpoints are (pod, ip, conditions)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": cond, "targetRef": {"kind": "Pod", "name": pod}}
            for pod, ip, cond in endpoints
        ],
    }


class FakeApiServer:
    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace
        self.version = 100
        self.slices: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.oldest = 0  # watches from before this resourceVersion get 410 Gone
        self.objects: dict[str, dict[str, Any]] = {}  # request path -> object
        self.requests: list[tuple[str, dict[str, str]]] = []  # (list|watch, query)
        self.changed = asyncio.Condition()
        self.streams: set[web.StreamResponse] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.closing = False

    # --- driving it ---------------------------------------------------------------------------
    async def put(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        kind = "MODIFIED" if name in self.slices else "ADDED"
        await self._record(kind, obj)
        self.slices[name] = self.history[-1][2]

    async def delete(self, name: str) -> None:
        obj = self.slices.pop(name)
        await self._record("DELETED", obj)

    async def bookmark(self) -> None:
        await self._record("BOOKMARK", {"kind": "EndpointSlice", "metadata": {}})

    def compact(self) -> None:
        """Forget the history so far: any watch from an older resourceVersion gets 410."""
        self.oldest = self.version + 1
        self.history.clear()

    async def disconnect(self) -> None:
        """Drop every open watch connection (as an API server restart or a proxy would)."""
        for stream in list(self.streams):
            transport = stream._req.transport if stream._req else None
            if transport is not None:
                transport.close()
        self.streams.clear()

    async def _record(self, kind: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, kind, obj))
        async with self.changed:
            self.changed.notify_all()

    def watches(self) -> list[dict[str, str]]:
        return [q for kind, q in self.requests if kind == "watch"]

    def lists(self) -> list[dict[str, str]]:
        return [q for kind, q in self.requests if kind == "list"]

    # --- serving it ---------------------------------------------------------------------------
    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_get(SLICES, self.endpointslices)
        app.router.add_get("/{path:.*}", self.object)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.port = port
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.closing = True
        async with self.changed:
            self.changed.notify_all()
        await self.disconnect()
        if self.runner is not None:
            await self.runner.cleanup()

    def kubeconfig(self) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
                "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            }
        )

    def _selected(self, selector: str) -> list[dict[str, Any]]:
        key, _, value = selector.partition("=")
        return [
            s for s in self.slices.values() if s["metadata"].get("labels", {}).get(key) == value
        ]

    async def endpointslices(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer fake-token":
            return web.json_response(status(401, "Unauthorized", "no token"), status=401)
        query = dict(request.query)
        selector = query.get("labelSelector", "")
        if query.get("watch") not in ("true", "1", "True"):
            self.requests.append(("list", query))
            return web.json_response(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSliceList",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": self._selected(selector),
                }
            )
        self.requests.append(("watch", query))
        since = int(query.get("resourceVersion") or self.version)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.streams.add(response)
        if since < self.oldest - 1:
            gone = status(410, "Expired", f"too old resource version: {since} ({self.oldest})")
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        timeout = float(query.get("timeoutSeconds") or 300)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        key, _, value = selector.partition("=")
        try:
            while True:
                for version, kind, obj in self.history:
                    if version <= since:
                        continue
                    since = version
                    labels = obj["metadata"].get("labels", {})
                    if kind != "BOOKMARK" and labels.get(key) != value:
                        continue
                    line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                    await response.write(line)
                async with self.changed:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self.closing:
                        break
                    try:
                        await asyncio.wait_for(self.changed.wait(), remaining)
                    except TimeoutError:
                        break
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.streams.discard(response)
        return response

    async def object(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        if path in self.objects:
            return web.json_response(self.objects[path])
        if path.startswith("/apis/traefik"):
            return web.json_response(
                status(404, "NotFound", "the server could not find the requested resource"),
                status=404,
            )
        if path.startswith("/apis/gateway.networking.k8s.io/"):  # a list of stored routes
            items = [o for p, o in self.objects.items() if p.startswith(path + "/")]
            if items:
                return web.json_response({"metadata": {}, "items": items})
        if path.endswith("/ingresses"):
            items = [o for p, o in self.objects.items() if "/ingresses/" in p]
            return web.json_response(
                {"apiVersion": "networking.k8s.io/v1", "kind": "IngressList",
                 "metadata": {"resourceVersion": str(self.version)}, "items": items}
            )  # fmt: skip
        return web.json_response(status(404, "NotFound", f"{path} not found"), status=404)


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
