"""Stands in for Cython's ``cython`` module when Cython is not installed: the pure-Python wire
core only reads ``compiled`` (False) and applies the decorators, which do nothing here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

compiled = False
Py_ssize_t = int
uchar = int
p_uchar = p_char = object


def _same(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


cfunc = inline = _same


def locals(**_types: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _same


def cast(_type: Any, value: Any) -> Any:
    return value
