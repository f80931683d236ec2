"""listeners[*].h2 / .h2c and --h2c / --no-h2: which listeners speak HTTP/2."""

from __future__ import annotations

import argparse

import pytest

from limpet.config.load import parse_config
from limpet.errors import ConfigError
from limpet.proxy.cli import configure, resolve

POOLS = "pools:\n  web: {backends: [127.0.0.1:1]}\n"


def test_defaults_tls_offers_h2_cleartext_does_not() -> None:
    cfg = parse_config("listeners:\n  - '127.0.0.1:9'\n" + POOLS)
    assert cfg.listeners[0].h2 is True and cfg.listeners[0].h2c is False


def test_config_keys() -> None:
    cfg = parse_config("listeners:\n  - {address: '127.0.0.1:9', h2c: true, h2: false}\n" + POOLS)
    assert cfg.listeners[0].h2c is True and cfg.listeners[0].h2 is False


def test_a_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"listeners\[0\]\.h2c"):
        parse_config("listeners:\n  - {address: '127.0.0.1:9', h2c: maybe}\n" + POOLS)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(["--backend", "http://127.0.0.1:1", *argv])


def test_flags_set_every_listener() -> None:
    cfg = resolve(parse("--h2c", "--no-h2"))
    assert all(lc.h2c and not lc.h2 for lc in cfg.listeners)
    cfg = resolve(parse())
    assert all(lc.h2 and not lc.h2c for lc in cfg.listeners)  # twin: the defaults
