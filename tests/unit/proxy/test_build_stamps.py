"""The compiled build cannot run stale: each compiled module carries the hash of its sources
(limpet.proxy.wire.stamps), and the .pxd that makes Exchange and Deadline extension types
declares exactly their __slots__ (a field in one and not the other would differ by build)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from limpet.proxy import fast, http1
from limpet.proxy.wire import stamps

PACKAGE = Path(stamps.__file__).resolve().parents[2]  # src/limpet
BUILT = all(stamps.problem(m) != f"{m} is not built" for m in stamps.SOURCES)


def copy_sources(tmp: Path) -> Path:
    for module in stamps.SOURCES:
        for rel in stamps.SOURCES[module]:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PACKAGE / rel, tmp / rel)
    return tmp


def test_a_stamp_is_read_back_from_the_file_it_is_in(tmp_path: Path) -> None:
    digest = stamps.source_hash(PACKAGE, "limpet.proxy._chttp1")
    c = stamps.stamp_c("limpet.proxy._chttp1", digest)
    blob = tmp_path / "module.so"
    blob.write_bytes(b"\x7fELF" + b"\0" * 100 + c.encode() + b"\0" * 100)
    assert stamps.read_stamp(blob) == digest
    blob.write_bytes(b"\x7fELF" + b"\0" * 100)
    assert stamps.read_stamp(blob) is None


def test_the_hash_covers_the_pxd_too(tmp_path: Path) -> None:
    copy_sources(tmp_path)
    before = stamps.source_hash(tmp_path, "limpet.proxy._chttp1")
    with (tmp_path / "proxy/_chttp1.pxd").open("a") as f:
        f.write("# changed\n")
    assert stamps.source_hash(tmp_path, "limpet.proxy._chttp1") != before


@pytest.mark.skipif(not BUILT, reason="the compiled build is not made (run scripts/bootstrap)")
@pytest.mark.parametrize("module", list(stamps.SOURCES))
def test_a_module_built_from_other_sources_is_refused(tmp_path: Path, module: str) -> None:
    copy_sources(tmp_path)
    source = tmp_path / stamps.SOURCES[module][0]
    source.write_bytes(source.read_bytes() + b"\n# edited after the build\n")
    reason = stamps.problem(module, tmp_path)
    assert reason is not None and f"{module} is stale" in reason


@pytest.mark.skipif(not BUILT, reason="the compiled build is not made (run scripts/bootstrap)")
@pytest.mark.parametrize("module", list(stamps.SOURCES))
def test_twin_a_module_built_from_these_sources_runs(tmp_path: Path, module: str) -> None:
    copy_sources(tmp_path)
    assert stamps.problem(module, tmp_path) is None
    assert stamps.problem(module) is None  # and the real tree is fresh too


def test_stale_is_an_error_under_the_suite_and_a_fallback_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stamps, "problem", lambda m: f"{m} is stale: built from x")
    monkeypatch.setenv(stamps.STRICT_ENV, "1")
    with pytest.raises(stamps.StaleBuild, match="is stale"):
        stamps.check()
    monkeypatch.delenv(stamps.STRICT_ENV)
    assert "is stale" in (stamps.check() or "")


def test_twin_nothing_built_is_a_plain_fallback_even_under_the_suite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stamps, "problem", lambda m: f"{m} is not built")
    monkeypatch.setenv(stamps.STRICT_ENV, "1")
    assert "is not built" in (stamps.check() or "")


def test_a_partial_build_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "limpet.proxy._chttp1"
    monkeypatch.setattr(stamps, "problem", lambda m: f"{m} is not built" if m == missing else None)
    monkeypatch.setenv(stamps.STRICT_ENV, "1")
    with pytest.raises(stamps.StaleBuild, match="_chttp1 is not built"):
        stamps.check()


# -- the .pxd and __slots__ ------------------------------------------------------------------------
def pxd_fields(text: str) -> dict[str, set[str]]:
    """``cdef class X:`` -> the names its ``cdef public TYPE a, b`` lines declare."""
    fields: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"cdef class (\w+)", line)
        if m:
            current = fields.setdefault(m.group(1), set())
            continue
        m = re.match(r"\s+cdef public \w+ (.+)", line)
        if m and current is not None:
            current.update(name.strip() for name in m.group(1).split(","))
    return fields


def drift(text: str, module: ModuleType = http1) -> dict[str, set[str]]:
    """The names in a class's __slots__ or in its .pxd declaration but not in both."""
    return {
        name: declared ^ set(getattr(module, name).__slots__)
        for name, declared in pxd_fields(text).items()
        if declared ^ set(getattr(module, name).__slots__)
    }


def test_the_pxd_declares_exactly_the_slots() -> None:
    text = (PACKAGE / "proxy/_chttp1.pxd").read_text()
    assert set(pxd_fields(text)) == {"Exchange", "Deadline"}
    assert drift(text) == {}


def test_twin_a_field_missing_from_the_pxd_is_found() -> None:
    text = (PACKAGE / "proxy/_chttp1.pxd").read_text().replace(" replayable,", "")
    assert drift(text) == {"Exchange": {"replayable"}}


def test_the_fast_path_pxd_declares_exactly_the_slots() -> None:
    text = (PACKAGE / "proxy/_cfast.pxd").read_text()
    assert set(pxd_fields(text)) == {"FastPath", "ReferencePath"}
    assert drift(text, fast) == {}


def test_twin_a_field_missing_from_the_fast_path_pxd_is_found() -> None:
    text = (PACKAGE / "proxy/_cfast.pxd").read_text().replace(", until_close", "")
    assert drift(text, fast) == {"FastPath": {"until_close"}}
