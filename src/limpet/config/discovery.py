"""The ``discovery:`` block of a pool in the YAML config, validated with key paths and lines.

discovery: static                      # the pool's backends list (the default)
discovery:
  dns: {name: chat.web.svc.cluster.local, port: 8080, interval: 5, nameserver: 10.0.0.10:53}
discovery:
  dns: {name: _http._tcp.chat.web.svc.cluster.local, record: SRV}
discovery:
  kubernetes: {service: web/chat, kubeconfig: ~/.kube/config, port-name: http}
"""

from __future__ import annotations

from typing import Any

import yaml

from limpet.config.model import DiscoveryConfig
from limpet.config.nodes import Ctx, mapping, typed
from limpet.errors import DiscoveryError, UsageError

DNS_RECORDS = ("A", "AAAA", "A+AAAA", "SRV")
DNS_KEYS = {"name", "port", "record", "interval", "nameserver"}
KUBERNETES_KEYS = {"service", "kubeconfig", "port-name"}


def parse_discovery(ctx: Ctx, node: yaml.Node, key: str) -> DiscoveryConfig:
    if isinstance(node, yaml.ScalarNode):
        if typed(ctx, node, key, str) != "static":
            raise ctx.error("expected static, or a mapping with dns: or kubernetes:", key, node)
        return DiscoveryConfig()
    items = mapping(ctx, node, key)
    if len(items) != 1:
        raise ctx.error("expected exactly one of static, dns, kubernetes", key, node)
    kind, (knode, vnode) = next(iter(items.items()))
    sub = f"{key}.{kind}"
    if kind == "static":
        return DiscoveryConfig()
    if kind not in ("dns", "kubernetes"):
        raise ctx.error(
            f"unknown discovery {kind!r} (expected static, dns, kubernetes)", sub, knode
        )
    fields = mapping(ctx, vnode, sub)
    allowed = DNS_KEYS if kind == "dns" else KUBERNETES_KEYS
    for name, (fknode, _) in fields.items():
        if name.replace("_", "-") not in allowed:
            raise ctx.error(
                f"unknown key {name!r} (expected one of {', '.join(sorted(allowed))})",
                f"{sub}.{name}",
                fknode,
            )
    values: dict[str, Any] = {}
    for name, (_, fvnode) in fields.items():
        attr = name.replace("-", "_")
        kind_of = {"port": int, "interval": float}.get(attr, str)
        values[attr] = (fvnode, typed(ctx, fvnode, f"{sub}.{name}", kind_of))
    if kind == "dns":
        return _dns(ctx, vnode, sub, values)
    service = values.get("service")
    if service is None:
        raise ctx.error("kubernetes discovery needs service: NAMESPACE/NAME", sub, vnode)
    try:
        from limpet.discovery.kubernetes import parse_service_ref

        parse_service_ref(service[1])
    except DiscoveryError as exc:
        raise ctx.error(str(exc), f"{sub}.service", service[0]) from None
    return DiscoveryConfig(
        kind="kubernetes",
        service=service[1],
        kubeconfig=values["kubeconfig"][1] if "kubeconfig" in values else None,
        port_name=values["port_name"][1] if "port_name" in values else None,
    )


def _dns(ctx: Ctx, node: yaml.Node, key: str, values: dict[str, Any]) -> DiscoveryConfig:
    plain = {k: v for k, (_, v) in values.items()}
    if not plain.get("name"):
        raise ctx.error("dns discovery needs name", key, node)
    record = str(plain.get("record", "A+AAAA")).upper()
    if record not in DNS_RECORDS:
        raise ctx.error(f"record must be one of {', '.join(DNS_RECORDS)}", f"{key}.record", node)
    port = plain.get("port")
    if record != "SRV" and port is None:
        raise ctx.error(f"dns discovery by {record} records needs port", key, node)
    if port is not None and not 0 < port < 65536:
        raise ctx.error("port must be 1..65535", f"{key}.port", values["port"][0])
    interval = plain.get("interval", 5.0)
    if interval <= 0:
        raise ctx.error("interval must be positive", f"{key}.interval", values["interval"][0])
    nameserver = plain.get("nameserver")
    if nameserver is not None:
        try:
            parse_nameserver(nameserver)
        except UsageError as exc:
            raise ctx.error(str(exc), f"{key}.nameserver", values["nameserver"][0]) from None
    return DiscoveryConfig(
        kind="dns",
        name=plain["name"],
        port=port,
        record=record,
        interval=interval,
        nameserver=nameserver,
    )


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` of a DNS server (port 53 by default); the host must be an IP address."""
    import ipaddress

    from limpet.runtime import parse_hostport

    host, port = parse_hostport(text, default_port=53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"DNS nameserver {text!r}: expected an IP address[:PORT]") from None
    return host, port
