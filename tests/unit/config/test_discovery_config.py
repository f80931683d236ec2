"""Discovery in the proxy's config and flags: the ``discovery:`` block, ``--backend dns://``,
the DNS flags, and how explicit affinity keys win over what a Kubernetes Service derives."""

from __future__ import annotations

import argparse

import pytest

from limpet.affinity.spec import AffinitySpec
from limpet.config.load import finish, parse_config
from limpet.config.model import DiscoveryConfig
from limpet.errors import ConfigError, DiscoveryError, UsageError
from limpet.proxy import cli
from limpet.proxy.discovery import merge_affinity, parse_dns_backend


def test_dns_block() -> None:
    cfg = parse_config(
        "pools:\n"
        "  chat:\n"
        "    discovery:\n"
        "      dns: {name: chat.web.svc, port: 8080, interval: 2, nameserver: '10.0.0.10:5353'}\n"
    )
    pool = finish(cfg).pools[0]
    assert pool.backends == ()
    assert pool.discovery == DiscoveryConfig(
        kind="dns", name="chat.web.svc", port=8080, interval=2.0, nameserver="10.0.0.10:5353"
    )


def test_srv_and_kubernetes_and_static_blocks() -> None:
    cfg = parse_config(
        "pools:\n"
        "  a:\n"
        "    discovery: {dns: {name: _http._tcp.chat, record: srv}}\n"
        "  b:\n"
        "    discovery: {kubernetes: {service: web/chat, port-name: http}}\n"
        "  c:\n"
        "    backends: [127.0.0.1:9000]\n"
        "    discovery: static\n"
    )
    a, b, c = cfg.pools
    assert (a.discovery.kind, a.discovery.record, a.discovery.port) == ("dns", "SRV", None)
    assert b.discovery == DiscoveryConfig(kind="kubernetes", service="web/chat", port_name="http")
    assert c.discovery.kind == "static"


@pytest.mark.parametrize(
    ("block", "key", "line", "message"),
    [
        ("discovery: {dns: {name: x}}", "pools.p.discovery.dns", 3, "needs port"),
        ("discovery: {dns: {port: 80}}", "pools.p.discovery.dns", 3, "needs name"),
        ("discovery: {dns: {name: x, port: 80, record: MX}}", "record", 3, "one of"),
        ("discovery: {dns: {name: x, port: 80, ttl: 3}}", "dns.ttl", 3, "unknown key"),
        ("discovery: {dns: {name: x, port: 80, nameserver: ns1}}", "nameserver", 3, "IP"),
        ("discovery: {dns: {name: x, port: 80, interval: 0}}", "interval", 3, "positive"),
        ("discovery: {kubernetes: {kubeconfig: k}}", "kubernetes", 3, "needs service"),
        ("discovery: {kubernetes: {service: a/b/c}}", "service", 3, "NAMESPACE/NAME"),
        ("discovery: {consul: {}}", "discovery.consul", 3, "unknown discovery"),
        ("discovery: dynamic", "pools.p.discovery", 3, "expected static"),
        ("discovery: {static: null, dns: {}}", "pools.p.discovery", 3, "exactly one"),
    ],
)
def test_bad_blocks_name_key_and_line(block: str, key: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"pools:\n  p:\n    {block}\n", "proxy.yaml")
    assert key in info.value.key and info.value.line == line and message in str(info.value)


def test_backends_and_discovery_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="backends or a discovery"):
        parse_config(
            "pools:\n  p:\n    backends: [127.0.0.1:1]\n    discovery: {dns: {name: x, port: 80}}\n"
        )


@pytest.mark.parametrize(
    ("flag", "want"),
    [
        ("dns://chat.web.svc:8080", ("chat.web.svc", 8080, "A+AAAA")),
        ("dns+a://chat:80", ("chat", 80, "A")),
        ("dns+aaaa://chat:80/", ("chat", 80, "AAAA")),
        ("dns+srv://_http._tcp.chat.web.svc", ("_http._tcp.chat.web.svc", None, "SRV")),
    ],
)
def test_dns_backend_flags(flag: str, want: tuple[str, int | None, str]) -> None:
    d = parse_dns_backend(flag)
    assert (d.name, d.port, d.record) == want


@pytest.mark.parametrize(
    "flag", ["dns://chat", "dns://:80", "dns://chat:0", "dns://chat:x", "dns+srv://chat:80"]
)
def test_bad_dns_backend_flags(flag: str) -> None:
    with pytest.raises(UsageError):
        parse_dns_backend(flag)


def resolve(*argv: str) -> object:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return cli.resolve(parser.parse_args(list(argv)))


def test_flags_build_a_dns_pool() -> None:
    cfg = resolve("--backend", "dns://chat:8080", "--dns-nameserver", "127.0.0.1:5353",
                  "--dns-interval", "0.5", "--affinity", "client-ip")  # fmt: skip
    pool = cfg.pools[0]  # type: ignore[attr-defined]
    assert pool.backends == () and pool.affinity.mode == "client-ip"
    assert (pool.discovery.name, pool.discovery.nameserver, pool.discovery.interval) == (
        "chat",
        "127.0.0.1:5353",
        0.5,
    )


def test_static_backend_flag_replaces_a_configured_discovery(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.yaml"
    path.write_text("pools:\n  p:\n    discovery: {dns: {name: x, port: 80}}\n")
    cfg = resolve("--config", str(path), "--backend", "http://127.0.0.1:9000")
    pool = cfg.pools[0]  # type: ignore[attr-defined]
    assert pool.discovery.kind == "static" and [b.address for b in pool.backends] == [
        "127.0.0.1:9000"
    ]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--backend", "dns://a:1", "--backend", "dns://b:1"], UsageError),
        (["--backend", "dns://a:1", "--kubernetes-service", "web/chat"], UsageError),
        (["--backend", "dns://a:1", "--dns-interval", "0"], UsageError),
        (["--kubernetes-service", "a/b/c"], DiscoveryError),
    ],
)
def test_bad_flag_combinations(argv: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve(*argv)


def test_explicit_affinity_keys_win_over_the_derived_rule() -> None:
    derived = AffinitySpec(mode="cookie", cookie_name="GCLB", cookie_ttl=600)
    assert merge_affinity(derived, AffinitySpec(), "p") == derived  # nothing explicit
    merged = merge_affinity(derived, AffinitySpec(cookie_name="mine"), "p")
    assert (merged.mode, merged.cookie_name, merged.cookie_ttl) == ("cookie", "mine", 600)
    hashed = merge_affinity(derived, AffinitySpec.from_flag("hash:header:X-User"), "p")
    assert (hashed.mode, hashed.hash_source, hashed.hash_key) == ("hash", "header", "X-User")


def test_service_affinity_with_static_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """--kubernetes-service with --backend URLs: members from the flags, affinity from the
    Service (read once), explicit flags still on top."""
    from limpet.proxy import discovery

    seen: list[str] = []

    def derive(ref: str, kubeconfig: str | None) -> AffinitySpec:
        seen.append(ref)
        return AffinitySpec(mode="client-ip", client_ip_timeout=600)

    monkeypatch.setattr(discovery, "derive_service_affinity", derive)
    cfg = resolve("--kubernetes-service", "web/chat", "--backend", "http://127.0.0.1:9000")
    pool = cfg.pools[0]  # type: ignore[attr-defined]
    assert seen == ["web/chat"] and pool.discovery.kind == "static"
    assert (pool.affinity.mode, pool.affinity.client_ip_timeout) == ("client-ip", 600)
    assert [b.address for b in pool.backends] == ["127.0.0.1:9000"]
    cfg = resolve("--kubernetes-service", "web/chat", "--client-ip-timeout", "30")
    pool = cfg.pools[0]  # type: ignore[attr-defined]
    assert pool.discovery.service == "web/chat" and pool.affinity.client_ip_timeout == 30
