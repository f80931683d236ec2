"""Kubernetes discovery: watch a Service's EndpointSlices (discovery.k8s.io/v1) with
kubernetes_asyncio, and read the affinity its manifests configure.

The watch follows the API's list/watch contract: list once (the resourceVersion of the list is
the starting point), then watch from the last resourceVersion seen; a watch that ends (server
timeout, dropped connection) resumes from there; ``410 Gone`` (history compacted) means relist.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from limpet.affinity.spec import AffinitySpec
from limpet.discovery.base import Endpoint, Snapshot, join_hostport, snapshot
from limpet.errors import DiscoveryError

log = logging.getLogger("limpet.discovery.kubernetes")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


#: RFC 1123 label (a namespace) and RFC 1035 label (a Service name), as the API server checks
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SERVICE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def parse_service_ref(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` (or ``NAME`` in ``default``) as a pair; DiscoveryError otherwise."""
    namespace, _, name = text.rpartition("/")
    namespace = namespace or "default"
    if not name or "/" in namespace:
        raise DiscoveryError(f"expected a Service as NAMESPACE/NAME, got {text!r}")
    if not _NAMESPACE.fullmatch(namespace):
        raise DiscoveryError(
            f"{text!r}: namespace {namespace!r} is not a Kubernetes name "
            "(lower-case a-z, 0-9 and '-', at most 63)"
        )
    if not _SERVICE.fullmatch(name):
        raise DiscoveryError(
            f"{text!r}: {name!r} is not a Service name (lower-case a-z, 0-9 and '-', "
            "starting with a letter, at most 63)"
        )
    return namespace, name


def endpoints_from_slices(
    slices: Iterable[Mapping[str, Any]], port_name: str | None = None
) -> Snapshot:
    """The pool described by a Service's EndpointSlices (plain API dicts).

    Per the EndpointSlice API: ``ready`` unset means ready; ``terminating`` endpoints get no new
    sessions (drain). FQDN slices and endpoints without an address or matching port are skipped.
    """
    found: list[Endpoint] = []
    for item in slices:
        if item.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        ports = [p for p in item.get("ports") or [] if isinstance(p, Mapping) and p.get("port")]
        if port_name is not None:
            ports = [p for p in ports if p.get("name") == port_name]
        if not ports:
            continue
        port = int(ports[0]["port"])
        for ep in item.get("endpoints") or []:
            addresses = ep.get("addresses") or []
            if not addresses:
                continue
            conditions = ep.get("conditions") or {}
            terminating = bool(conditions.get("terminating"))
            ready = conditions.get("ready") is not False and not terminating
            target = ep.get("targetRef") or {}
            address = join_hostport(str(addresses[0]), port)
            ident = str(target.get("name") or address)
            found.append(Endpoint(ident, address, ready=ready, terminating=terminating))
    return snapshot(found)


#: where Kubernetes mounts a pod's service-account token and the cluster CA
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


async def api_client(
    kubeconfig: str | None = None,
    context: str | None = None,
    service_account_dir: str = SERVICE_ACCOUNT_DIR,
) -> Any:
    """An ApiClient from the in-cluster service account, else from a kubeconfig file.

    In a pod (KUBERNETES_SERVICE_HOST set) and without an explicit kubeconfig, the mounted
    service-account token is used; otherwise ``kubeconfig`` or $KUBECONFIG or ~/.kube/config.
    """
    import yaml
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration,
                token_filename=os.path.join(service_account_dir, "token"),
                cert_filename=os.path.join(service_account_dir, "ca.crt"),
            )
        except config.ConfigException as exc:
            raise DiscoveryError(f"in-cluster Kubernetes config: {exc}") from None
        return client.ApiClient(configuration=configuration)
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    paths = [os.path.expanduser(p) for p in where.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in paths):
        # said here: the library logs "Config not found: /home/..." and then complains about
        # a missing current-context of the empty config it fell back to
        raise DiscoveryError(
            f"no Kubernetes config: {where} does not exist (not in a pod either); pass "
            "--kubeconfig PATH or set KUBECONFIG"
        )
    try:
        await config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except (config.ConfigException, OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        reason = str(exc).replace("\n", " ")
        raise DiscoveryError(f"cannot load kubeconfig {where}: {reason}") from None
    return client.ApiClient(configuration=configuration)


class EndpointSliceDiscovery:
    """Snapshots of the endpoints of Service ``namespace/service`` as its EndpointSlices change."""

    def __init__(
        self,
        namespace: str,
        service: str,
        *,
        port_name: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        service_account_dir: str = SERVICE_ACCOUNT_DIR,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
    ) -> None:
        self.namespace, self.service, self.port_name = namespace, service, port_name
        self.kubeconfig, self.context = kubeconfig, context
        self.service_account_dir = service_account_dir
        self.watch_timeout = watch_timeout
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self.resource_version: str | None = None  # where the next watch resumes; None: relist
        self.relists = 0

    def __repr__(self) -> str:
        return (
            f"EndpointSliceDiscovery({self.namespace}/{self.service}, "
            f"resource_version={self.resource_version})"
        )

    async def watch(self) -> AsyncIterator[Snapshot]:
        import aiohttp
        from kubernetes_asyncio.client import DiscoveryV1Api
        from kubernetes_asyncio.client.exceptions import ApiException
        from kubernetes_asyncio.watch import Watch

        client = await api_client(self.kubeconfig, self.context, self.service_account_dir)
        api = DiscoveryV1Api(client)
        selector = f"{SERVICE_NAME_LABEL}={self.service}"
        slices: dict[str, Mapping[str, Any]] = {}
        last: Snapshot | None = None
        delay = self.retry_delay
        try:
            while True:
                try:
                    if self.resource_version is None:
                        listed = await api.list_namespaced_endpoint_slice(
                            self.namespace, label_selector=selector
                        )
                        slices = {
                            item.metadata.name: client.sanitize_for_serialization(item)
                            for item in listed.items
                        }
                        self.resource_version = listed.metadata.resource_version
                        self.relists += 1
                        current = endpoints_from_slices(slices.values(), self.port_name)
                        if current != last:
                            last = current
                            yield current
                    async with Watch().stream(
                        api.list_namespaced_endpoint_slice,
                        self.namespace,
                        label_selector=selector,
                        resource_version=self.resource_version,
                        allow_watch_bookmarks=True,
                        timeout_seconds=self.watch_timeout,
                    ) as stream:
                        async for event in stream:
                            delay = self.retry_delay
                            raw = event["raw_object"]
                            version = (raw.get("metadata") or {}).get("resourceVersion")
                            if version:
                                self.resource_version = version
                            if event["type"] == "BOOKMARK":
                                continue
                            name = raw["metadata"]["name"]
                            if event["type"] == "DELETED":
                                slices.pop(name, None)
                            else:
                                slices[name] = raw
                            current = endpoints_from_slices(slices.values(), self.port_name)
                            if current != last:
                                last = current
                                yield current
                    # the watch ended (timeout or dropped connection): resume where it stopped
                    log.debug("watch of %s ended; resuming", selector)
                except ApiException as exc:
                    if exc.status == 410:
                        log.info("resourceVersion %s expired (410 Gone); relisting",
                                 self.resource_version)  # fmt: skip
                        self.resource_version = None
                        continue
                    if exc.status in (401, 403, 404) and last is None:
                        raise DiscoveryError(
                            f"listing EndpointSlices of {self.namespace}/{self.service}: "
                            f"{exc.status} {exc.reason}"
                        ) from None
                    log.warning("Kubernetes API error %s %s; retrying in %.1fs",
                                exc.status, exc.reason, delay)  # fmt: skip
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_delay)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    log.warning("Kubernetes API unreachable (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_delay)
        finally:
            await client.close()


async def read_service_objects(client: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Service plus what can configure its affinity: BackendConfigs, Ingresses, Traefik CRDs,
    Gateway API routes and BackendLBPolicies, GKE GCPBackendPolicies."""
    from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi, NetworkingV1Api
    from kubernetes_asyncio.client.exceptions import ApiException

    from limpet.k8s.dialects import backend_config_refs

    try:
        service = await CoreV1Api(client).read_namespaced_service(name, namespace)
    except ApiException as exc:
        raise DiscoveryError(
            f"reading Service {namespace}/{name}: {exc.status} {exc.reason}"
        ) from None
    objects: list[dict[str, Any]] = [client.sanitize_for_serialization(service)]
    objects[0].setdefault("apiVersion", "v1")
    objects[0].setdefault("kind", "Service")
    custom = CustomObjectsApi(client)
    try:
        _, refs = backend_config_refs(objects[0])
    except ValueError:
        refs = {}
    for bc in sorted(set(refs.values())):
        try:
            objects.append(
                await custom.get_namespaced_custom_object(
                    "cloud.google.com", "v1", namespace, "backendconfigs", bc
                )
            )
        except ApiException as exc:
            log.warning("BackendConfig %s/%s: %s %s", namespace, bc, exc.status, exc.reason)
    try:
        ingresses = await NetworkingV1Api(client).list_namespaced_ingress(namespace)
    except ApiException as exc:
        log.warning("listing Ingresses in %s: %s %s", namespace, exc.status, exc.reason)
    else:
        for item in ingresses.items:
            obj = client.sanitize_for_serialization(item)
            obj.setdefault("apiVersion", "networking.k8s.io/v1")
            obj.setdefault("kind", "Ingress")
            objects.append(obj)
    custom_lists = [
        (group, "v1alpha1", plural)
        for group in ("traefik.io", "traefik.containo.us")
        for plural in ("ingressroutes", "traefikservices")
    ] + [
        ("gateway.networking.k8s.io", "v1", "httproutes"),
        ("gateway.networking.k8s.io", "v1", "grpcroutes"),
        ("gateway.networking.k8s.io", "v1alpha2", "backendlbpolicies"),
        ("networking.gke.io", "v1", "gcpbackendpolicies"),
    ]
    for group, version, plural in custom_lists:
        try:
            found = await custom.list_namespaced_custom_object(group, version, namespace, plural)
        except ApiException:
            continue  # the CRD is not installed: the usual case
        objects += found.get("items") or []
    return objects


async def fetch_service_objects(
    namespace: str, name: str, *, kubeconfig: str | None = None, context: str | None = None
) -> list[dict[str, Any]]:
    """``read_service_objects`` with a client of its own (for one-shot commands)."""
    client = await api_client(kubeconfig, context)
    try:
        return await read_service_objects(client, namespace, name)
    finally:
        await client.close()


async def read_service_affinity(
    namespace: str,
    name: str,
    *,
    client: Any | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> tuple[AffinitySpec, list[str]]:
    """Derive the affinity Service ``namespace/name`` is configured with, and notes to log.

    For ``limpet proxy --kubernetes-service``; explicit limpet settings override the result.
    """
    from limpet.k8s.dialects import derive_affinity

    own = client is None
    client = client or await api_client(kubeconfig, context)
    try:
        objects = await read_service_objects(client, namespace, name)
    finally:
        if own:
            await client.close()
    return derive_affinity(objects, name)
