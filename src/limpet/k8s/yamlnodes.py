"""SANS-IO: multi-document YAML with a line number for every key and item.

PyYAML's composed node tree carries source marks; we construct each document from its node and
keep a map from key path to line so lint findings can point at the exact line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

_TAB_INDENT = re.compile(r"^ *\t")


@dataclass(frozen=True, slots=True)
class Problem:
    """Text that is not a usable manifest: where and why."""

    line: int
    rule: str
    message: str


@dataclass(slots=True)
class Document:
    """One YAML document: its value, where it starts, and a line for each key path."""

    index: int
    obj: Any
    start_line: int
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, *path: str | int) -> int:
        """Line of the longest known prefix of ``path`` (the document start if none)."""
        p: Path = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.start_line

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", "")) if isinstance(self.obj, Mapping) else ""

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", "")) if isinstance(self.obj, Mapping) else ""

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj, Mapping) else None
        return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""

    @property
    def namespace(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj, Mapping) else None
        ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        return str(ns) if ns else "default"


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key: str | int = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            sub = (*path, key)
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines)


def tab_indents(text: str) -> Iterator[int]:
    """Lines (1-based) whose indentation contains a tab; YAML forbids tabs there."""
    for number, line in enumerate(text.splitlines(), 1):
        if _TAB_INDENT.match(line):
            yield number


def parse(text: str) -> tuple[list[Document], list[Problem]]:
    """Parse every document of ``text``; YAML errors become Problems instead of exceptions."""
    problems = [
        Problem(n, "yaml-tab-indent", "indentation contains a tab; YAML allows only spaces")
        for n in tab_indents(text)
    ]
    documents: list[Document] = []
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character PyYAML refuses outright
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        problems.append(Problem(line, "yaml-invalid", f"not valid YAML: {exc.reason}"))
        return documents, problems
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there is one
                break
            lines: dict[Path, int] = {}
            _walk(node, (), lines)
            obj = loader.construct_document(node)
            if obj is not None:
                documents.append(Document(index, obj, node.start_mark.line + 1, lines))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        if not any(p.line == line for p in problems):
            message = f"not valid YAML: {exc.problem or exc}"
            if exc.context and exc.context_mark is not None:
                message += f" ({exc.context} at line {exc.context_mark.line + 1})"
            problems.append(Problem(line, "yaml-invalid", message))
    except yaml.YAMLError as exc:
        problems.append(Problem(1, "yaml-invalid", f"not valid YAML: {exc}"))
    finally:
        loader.dispose()
    return documents, problems


def expand_lists(documents: list[Document]) -> list[Document]:
    """Documents with every ``kind: List`` (as ``kubectl get -o yaml`` prints) replaced by its items."""
    out: list[Document] = []
    for doc in documents:
        items = doc.obj.get("items") if isinstance(doc.obj, Mapping) else None
        if not (doc.kind.endswith("List") and isinstance(items, list)):
            out.append(doc)
            continue
        for i, item in enumerate(items):
            prefix = ("items", i)
            lines = {p[2:]: n for p, n in doc.lines.items() if p[:2] == prefix and len(p) > 2}
            out.append(Document(doc.index, item, doc.line(*prefix), lines))
    return out


def dump_all(objects: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML in the key order given (the order a reader expects)."""
    return yaml.safe_dump_all(
        [dict(o) for o in objects], sort_keys=False, default_flow_style=False, explicit_start=True
    )
