"""TLS certificate store: SNI picks by subjectAltName, rotation re-reads, bad files keep the old."""

from __future__ import annotations

from pathlib import Path

import pytest

from limpet.config.load import parse_config
from limpet.config.model import TlsPair
from limpet.errors import ConfigError, UsageError
from limpet.proxy.tls import CertStore
from tests.support.certs import TestCA


def pair(leaf: object) -> TlsPair:
    return TlsPair(str(leaf.cert), str(leaf.key))  # type: ignore[attr-defined]


def test_sni_picks_exact_then_wildcard_then_the_first(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    store = CertStore([pair(ca.leaf("a.test")), pair(ca.leaf("b.test", "*.c.test"))])
    first, second = store.contexts
    assert store.pick("a.test") is first
    assert store.pick("B.TEST.") is second
    assert store.pick("x.c.test") is second
    assert store.pick("y.x.c.test") is first  # a wildcard covers one label only
    assert store.pick(None) is first and store.pick("nobody.test") is first


def test_rotation_replaces_the_context_and_a_broken_file_keeps_the_old(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    store = CertStore([pair(ca.leaf("a.test"))])
    before = store.contexts[0]
    assert store.reload_if_changed() is False
    ca.leaf("a.test")
    assert store.reload_if_changed() is True and store.contexts[0] is not before
    current = store.contexts[0]
    Path(store.pairs[0].cert).write_text("half-written")
    assert store.reload_if_changed() is False and store.contexts[0] is current


def test_a_key_that_does_not_match_is_a_clear_error(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    a, b = ca.leaf("a.test"), ca.leaf("b.test")
    with pytest.raises(UsageError, match="not a PEM certificate chain and its private key"):
        CertStore([TlsPair(str(a.cert), str(b.key))])


def test_config_tls_takes_a_pair_or_a_list() -> None:
    pools = "pools:\n  web: {backends: [127.0.0.1:1]}\n"
    cfg = parse_config("listeners:\n  - {address: '127.0.0.1:1', tls: {cert: c, key: k}}\n" + pools)
    assert cfg.listeners[0].tls == (TlsPair("c", "k"),)
    cfg = parse_config(
        "listeners:\n  - address: '127.0.0.1:1'\n    tls: [{cert: c, key: k}, {cert: d, key: e}]\n"
        + pools
    )
    assert cfg.listeners[0].tls == (TlsPair("c", "k"), TlsPair("d", "e"))
    with pytest.raises(ConfigError, match=r"p.yaml:2: listeners\[0\].tls: a TLS pair needs cert"):
        parse_config("listeners:\n  - {address: '127.0.0.1:1', tls: {cert: c}}\n" + pools, "p.yaml")
