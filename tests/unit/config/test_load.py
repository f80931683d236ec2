"""The YAML loader: valid documents become the model; every error names key path and line."""

from __future__ import annotations

import pytest

from limpet.config.load import finish, parse_backend_flag, parse_config
from limpet.config.model import backend_id_for
from limpet.errors import ConfigError, UsageError

FULL = """\
listeners:
  - address: 127.0.0.1:8080
  - {address: "127.0.0.1:9000", mode: tcp}
pools:
  web:
    backends:
      - http://127.0.0.1:9001
      - {id: two, url: "http://127.0.0.1:9002"}
    affinity:
      mode: cookie
      cookie-name: SRV
      cookie-ttl: 3600
      cookie-samesite: Strict
    health: {path: /healthz, interval: 1.5, rise: 1, fall: 2}
  api:
    backends: [127.0.0.1:9003]
    affinity: {mode: "hash:header:X-User"}
routes:
  - {host: api.example.test, pool: api}
  - {path: /, pool: web}
timeouts: {connect: 1, header: 5}
limits: {max-headers: 50}
forwarding: {trust-forwarded: true}
admin: 127.0.0.1:9100
workers: 2
"""


def test_full_document() -> None:
    cfg = parse_config(FULL, "full.yaml")
    assert [lc.mode for lc in cfg.listeners] == ["http", "tcp"]
    web = cfg.pool("web")
    assert web is not None
    assert [b.id for b in web.backends] == [backend_id_for("127.0.0.1:9001"), "two"]
    assert web.affinity.cookie_name == "SRV" and web.affinity.cookie_ttl == 3600
    assert web.affinity.cookie_samesite == "Strict"
    assert web.health.path == "/healthz" and web.health.interval == 1.5 and web.health.fall == 2
    api = cfg.pool("api")
    assert api is not None and api.affinity.mode == "hash" and api.affinity.hash_key == "X-User"
    assert cfg.routes[0].host == "api.example.test" and cfg.routes[0].pool == "api"
    assert cfg.timeouts.connect == 1.0 and cfg.limits.max_headers == 50
    assert cfg.forwarding.trust_forwarded is True
    assert cfg.admin == "127.0.0.1:9100" and cfg.workers == 2


# (document, expected key path in the message, expected line)
ERRORS = [
    ("pools:\n  web:\n    backends: []\n", "pools.web.backends", 3),
    ("pools:\n  web:\n    backends: [a:1]\n    colour: red\n", "pools.web.colour", 4),
    (
        "pools:\n  web:\n    backends: [a:1]\n    affinity: {mode: sticky}\n",
        "pools.web.affinity.mode",
        4,
    ),
    (
        "pools:\n  web:\n    backends: [a:1]\n    affinity:\n      cookie-ttl: soon\n",
        "pools.web.affinity.cookie-ttl",
        5,
    ),
    (
        "pools:\n  web:\n    backends: [a:1]\n    health: {interval: -1}\n",
        "pools.web.health.interval",
        4,
    ),
    ("pools:\n  web:\n    backends: [a:1]\nroutes:\n  - {pool: nope}\n", "routes[0].pool", 5),
    ("timeouts:\n  connect: fast\n", "timeouts.connect", 2),
    ("listeners:\n  - address: nowhere\n", "listeners[0].address", 2),
    ("listeners:\n  - {address: '127.0.0.1:1', mode: udp}\n", "listeners[0].mode", 2),
    ("workers: 0\n", "workers", 1),
    ("bogus: 1\n", "bogus", 1),
    (
        "pools:\n  web:\n    backends:\n      - {id: a, url: 'x:1'}\n      - {id: a, url: 'y:1'}\n",
        "pools.web.backends[1]",
        5,
    ),
    ("pools:\n  web:\n    backends: [ftp://x:1]\n", "pools.web.backends[0]", 3),
]


@pytest.mark.parametrize(("text", "key", "line"), ERRORS)
def test_errors_name_key_and_line(text: str, key: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yaml")
    assert info.value.key == key
    assert info.value.line == line
    assert str(info.value).startswith(f"bad.yaml:{line}: {key}: ")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("pools:\n  web: [\n\tbackends: x\n", "tabs.yaml")
    assert info.value.line is not None and "not valid YAML" in str(info.value)


def test_finish_adds_a_catch_all_route_and_needs_backends() -> None:
    cfg = finish(parse_config("pools:\n  only:\n    backends: [a:1]\n"))
    assert cfg.routes[0].pool == "only" and cfg.routes[0].path == "/"
    with pytest.raises(ConfigError):
        finish(parse_config(""))


@pytest.mark.parametrize(
    ("flag", "bid", "address"),
    [
        ("a=http://127.0.0.1:1", "a", "127.0.0.1:1"),
        ("http://127.0.0.1:2", backend_id_for("127.0.0.1:2"), "127.0.0.1:2"),
        ("127.0.0.1:3", backend_id_for("127.0.0.1:3"), "127.0.0.1:3"),
        ("v6=http://[::1]:4", "v6", "[::1]:4"),
    ],
)
def test_backend_flag(flag: str, bid: str, address: str) -> None:
    b = parse_backend_flag(flag)
    assert (b.id, b.address) == (bid, address)


def test_backend_ids_are_stable_across_processes() -> None:
    assert backend_id_for("127.0.0.1:1") == backend_id_for("127.0.0.1:1")
    assert backend_id_for("127.0.0.1:1") != backend_id_for("127.0.0.1:2")


def test_bad_backend_flag() -> None:
    with pytest.raises(UsageError):
        parse_backend_flag("a=ftp://x:1")


def yaml_blocks(doc: str) -> list[str]:
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "docs" / doc
    if not path.exists():
        return []
    blocks, current, inside = [], [], False
    for line in path.read_text().splitlines():
        if line.strip() == "```yaml":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current) + "\n")
        elif inside:
            current.append(line)
    return blocks


DOC_BLOCKS = [
    (doc, i, b) for doc in ("proxy.md", "affinity.md") for i, b in enumerate(yaml_blocks(doc))
]


@pytest.mark.parametrize(
    ("doc", "index", "text"), DOC_BLOCKS, ids=[f"{d}#{i}" for d, i, _ in DOC_BLOCKS]
)
def test_config_examples_in_the_docs_load(doc: str, index: int, text: str) -> None:
    if "pools:" not in text and "listeners:" not in text:
        pytest.skip("not a proxy config example")
    parse_config(text, f"{doc}#{index}")


def test_the_docs_have_config_examples() -> None:
    assert len(yaml_blocks("proxy.md")) >= 1


def test_https_backends_and_the_pools_backend_ca() -> None:
    flag = parse_backend_flag("api=https://api.internal")
    assert flag.address == "api.internal:443" and flag.tls
    assert not parse_backend_flag("http://api.internal:8080").tls
    cfg = parse_config(
        "pools:\n  web:\n    tls-ca: /etc/limpet/backend-ca.pem\n    backends:\n"
        "      - https://a.internal:8443\n      - {url: 'wss://b.internal', weight: 2}\n"
        "      - http://c.internal:8080\n",
        "tls.yaml",
    )
    pool = cfg.pools[0]
    assert pool.tls_ca == "/etc/limpet/backend-ca.pem"
    assert [(b.address, b.tls) for b in pool.backends] == [
        ("a.internal:8443", True),
        ("b.internal:443", True),
        ("c.internal:8080", False),
    ]
    with pytest.raises(ConfigError, match="tls-ca"):
        parse_config("pools:\n  web:\n    tls-ca: [a]\n    backends: [a:1]\n", "bad.yaml")
