"""glibc's malloc_trim found through ctypes, switched off and tuned by LIMPET_MALLOC_TRIM."""

from __future__ import annotations

import pytest

from limpet.proxy import memory


def test_trim_is_glibcs_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIMPET_MALLOC_TRIM", raising=False)
    trim = memory.trimmer()
    if trim is None:
        pytest.skip("not glibc")
    assert trim() in (0, 1)  # 1: memory was given back, 0: there was none to give
    assert memory.interval() == memory.INTERVAL


def test_twin_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMPET_MALLOC_TRIM", "0")
    assert memory.trimmer() is None


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), ("soon", 10.0), ("-1", 10.0)])
def test_the_interval(monkeypatch: pytest.MonkeyPatch, value: str, seconds: float) -> None:
    monkeypatch.setenv("LIMPET_MALLOC_TRIM", value)
    assert memory.interval() == seconds
