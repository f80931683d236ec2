"""YAML nodes read with their positions: the helpers every config section's reader shares.

PyYAML's ``compose`` keeps each node's position (``start_mark``), so readers walk nodes rather
than plain dicts and a wrong value is reported where the user wrote it (key path and line).
"""

from __future__ import annotations

from typing import Any

import yaml

from limpet.errors import ConfigError


class Ctx:
    """Where the text being read came from, to name it in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, message: str, key: str, node: yaml.Node | None) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(message, key=key, source=self.source, line=line)


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
    return yaml.safe_load(yaml.serialize(node))


def typed(ctx: Ctx, node: yaml.Node, key: str, kind: type, optional: bool = False) -> Any:
    value = scalar(ctx, node, key)
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ctx.error(f"expected {kind.__name__}, got {value!r}", key, node)
    return value


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
