"""YAML nodes read with their positions: the helpers every config section's reader shares.

PyYAML's ``compose`` keeps each node's position (``start_mark``), so readers walk nodes rather
than plain dicts and a wrong value is reported where the user wrote it (key path and line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import yaml

from limpet.errors import ConfigError

T = TypeVar("T")


class Ctx:
    """Where the text being read came from, to name it in every error; and the errors found so
    far, so that one pass reports every wrong key of a file rather than the first one only."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ConfigError] = []

    def error(self, message: str, key: str, node: yaml.Node | None) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(message, key=key, source=self.source, line=line)

    @contextmanager
    def gather(self) -> Iterator[None]:
        """Read one key inside: its error is kept and reading goes on with the next key."""
        try:
            yield
        except ConfigError as exc:
            self.errors.extend(exc.errors)

    def mark(self) -> int:
        """Where the errors of a section start (for ``raise_since``)."""
        return len(self.errors)

    def raise_since(self, mark: int) -> None:
        """Raise the errors kept since ``mark`` as one ConfigError (one line each, by line):
        a section with a wrong key is not built, its neighbours are still read."""
        if len(self.errors) > mark:
            found = self.errors[mark:]
            del self.errors[mark:]
            raise ConfigError.combine(found)


def mapping(ctx: Ctx, node: yaml.Node, key: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error("expected a mapping", key, node)
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise ctx.error("keys must be plain strings", key, k)
        if k.value in out:
            raise ctx.error(f"duplicate key {k.value!r}", key, k)
        out[str(k.value)] = (k, v)
    return out


def scalar(ctx: Ctx, node: yaml.Node, key: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.error("expected a single value", key, node)
    # the node's tag is resolved already (compose did it): construct it as safe_load would. An
    # empty value (``mode:``, a ``-`` alone) is a null node; serialising it back to text and
    # re-parsing it gave "..." and a parser error instead of this loader's own message
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise ctx.error(f"not a valid value ({problem})", key, node) from None


def typed(ctx: Ctx, node: yaml.Node, key: str, kind: type, optional: bool = False) -> Any:
    value = scalar(ctx, node, key)
    if value is None and optional:
        return None
    if value is None:
        raise ctx.error(f"empty value (expected {kind.__name__})", key, node)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ctx.error(f"expected {kind.__name__}, got {value!r}", key, node)
    return value


def sequence(
    ctx: Ctx, node: yaml.Node, key: str, what: str, read: Callable[[yaml.Node, str], T]
) -> list[T]:
    """A non-empty list read item by item (``read(item, "KEY[i]")``), every item's errors kept."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise ctx.error(f"expected a non-empty list of {what}", key, node)
    out: list[T] = []
    mark = ctx.mark()
    for i, item in enumerate(node.value):
        with ctx.gather():
            out.append(read(item, f"{key}[{i}]"))
    ctx.raise_since(mark)
    return out


def compose_document(text: str, source: str) -> yaml.Node | None:
    """The YAML document's root node with positions (None: empty); a syntax error is a
    ConfigError naming the file and line."""
    try:
        return yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {problem}", source=source, line=line) from None
