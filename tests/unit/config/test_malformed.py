"""Malformed config files: empty values, several wrong keys, a file caught half-written, a
mistyped backend URL. Each gives the loader's own error (file, line, key), never a parser
traceback, and every error of a file is listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from limpet.config.load import load_config, parse_backend_flag, parse_config
from limpet.errors import ConfigError, UsageError

# (document, key path, line) of an empty value
EMPTY = [
    (
        "pools:\n  web:\n    backends: [a:1]\n    affinity:\n      mode:\n",
        "pools.web.affinity.mode",
        5,
    ),
    ("pools:\n  web:\n    backends:\n      - a:1\n      -\n", "pools.web.backends[1]", 5),
    ("pools:\n  web:\n    backends:\n      - {id: x, url: }\n", "pools.web.backends[0].url", 4),
    ("timeouts:\n  connect:\n", "timeouts.connect", 2),
    ("workers:\n", "workers", 1),
    ("listeners:\n  -\n", "listeners[0]", 2),
    ("listeners:\n  - {address: '127.0.0.1:1', mode: }\n", "listeners[0].mode", 2),
]


@pytest.mark.parametrize(("text", "key", "line"), EMPTY)
def test_an_empty_value_is_the_loaders_error(text: str, key: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "empty.yaml")
    assert str(info.value).startswith(f"empty.yaml:{line}: {key}: "), str(info.value)
    assert "\n" not in str(info.value)


def test_an_empty_optional_value_is_allowed() -> None:
    cfg = parse_config("admin:\npools:\n  web:\n    backends: [a:1]\n", "ok.yaml")
    assert cfg.admin is None


def test_every_wrong_key_of_a_file_is_reported() -> None:
    text = (
        "pools:\n"
        "  web:\n"
        "    backends: [a:1]\n"
        "    colour: red\n"  # 4
        "    affinity: {mode: sticky}\n"  # 5
        "timeouts:\n"
        "  conect: 1\n"  # 7
        "  header: soon\n"  # 8
        "bogus: 1\n"  # 9
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "many.yaml")
    lines = str(info.value).splitlines()
    assert [e.line for e in info.value.errors] == [4, 5, 7, 8, 9]
    assert lines[0].startswith("many.yaml:4: pools.web.colour: ")
    assert lines[1].startswith("many.yaml:5: pools.web.affinity.mode: ")
    assert lines[2].startswith("many.yaml:7: timeouts.conect: ")
    assert lines[3].startswith("many.yaml:8: timeouts.header: ")
    assert lines[4].startswith("many.yaml:9: bogus: ")
    # the first error stands for the whole (what callers that read one key see)
    assert (info.value.key, info.value.line) == ("pools.web.colour", 4)


def test_one_wrong_key_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("bogus: 1\n", "one.yaml")
    assert str(info.value) == str(info.value.errors[0])
    assert len(info.value.errors) == 1


def test_a_files_affinity_error_names_the_key_not_the_flag() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("pools:\n  web:\n    backends: [a:1]\n    affinity: {mode: cokie}\n", "f")
    assert "--affinity" not in str(info.value)
    assert str(info.value).startswith("f:4: pools.web.affinity.mode: mode 'cokie': ")


@pytest.mark.parametrize("url", ["a=http//127.0.0.1:9001", "http:/127.0.0.1:9001", "a=b c:1"])
def test_a_mistyped_backend_url_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="is not a host name or IP address"):
        parse_backend_flag(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9001", "web-0.web.svc:80", "[::1]:9", "x_y:1"])
def test_twin_a_well_formed_backend_url_is_taken(url: str) -> None:
    parse_backend_flag(url)


def test_a_mistyped_backend_url_in_a_file_names_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("pools:\n  web:\n    backends: ['http//127.0.0.1:9001']\n", "f")
    assert str(info.value).startswith("f:3: pools.web.backends[0]: ")


GOOD = "pools:\n  web:\n    backends:\n      - 127.0.0.1:9001\n      - 127.0.0.1:9002\n"
CUT = GOOD.index("      - 127.0.0.1:9002")  # a cut at a line boundary: valid YAML on its own


def test_a_file_still_open_for_writing_is_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    with path.open("w") as writer:
        writer.write(GOOD[:CUT])  # valid YAML on its own: one backend of two
        writer.flush()
        with pytest.raises(ConfigError, match="open for writing by another process"):
            load_config(path)
        writer.write(GOOD[CUT:])
    # twin: once the writer closed it, the whole file is read
    cfg = load_config(path)
    assert len(cfg.pools[0].backends) == 2


def test_twin_the_first_half_alone_is_valid_yaml() -> None:
    # what the check above guards against: the half file would load, with one backend
    assert len(parse_config(GOOD[:CUT]).pools[0].backends) == 1


def test_an_atomically_replaced_file_is_read_whole(tmp_path: Path) -> None:
    import os

    path = tmp_path / "proxy.yaml"
    path.write_text("pools:\n  web:\n    backends: [127.0.0.1:1]\n")
    new = tmp_path / ".proxy.yaml.new"
    with new.open("w") as writer:  # the new version is written beside it...
        writer.write(GOOD[:CUT])
        writer.flush()
        assert len(load_config(path).pools[0].backends) == 1  # readers see the old one
        writer.write(GOOD[CUT:])
    os.replace(new, path)  # ...and renamed over it once closed
    assert len(load_config(path).pools[0].backends) == 2


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_bytes(b"admin: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_a_listener_says_its_scheme() -> None:
    from limpet.config.model import ListenerConfig, TlsPair

    pair = (TlsPair("c.pem", "k.pem"),)
    assert ListenerConfig().scheme == "http"
    assert ListenerConfig(tls=pair).scheme == "https"  # logged as "(https)", not "(http)"
    assert ListenerConfig(mode="tcp").scheme == "tcp"
    assert ListenerConfig(mode="tcp", tls=pair).scheme == "tcp+tls"


def test_the_writer_check_leaves_sigio_as_it_was(tmp_path: Path) -> None:
    import os
    import signal

    from limpet.config.load import writers

    path = tmp_path / "proxy.yaml"
    path.write_text(GOOD)
    before = signal.getsignal(signal.SIGIO)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert writers(fd) is False
        with path.open("a"):
            assert writers(fd) is True
    finally:
        os.close(fd)
    assert signal.getsignal(signal.SIGIO) == before  # a lease break must not end the process
