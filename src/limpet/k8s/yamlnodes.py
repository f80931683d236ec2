"""SANS-IO: multi-document YAML with a line number for every key and item.

PyYAML's composed node tree carries source marks; we construct each document from its node and
keep a map from key path to line so lint findings can point at the exact line.
"""

from __future__ import annotations

import re
import unicodedata
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


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int], problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key: str | int = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            sub = (*path, key)
            line = key_node.start_mark.line + 1
            if sub in lines and key != "<<":
                # PyYAML keeps the last value silently; kubectl refuses the document
                problems.append(Problem(line, "yaml-duplicate-key",
                                        f"key {key!r} repeats the one at line {lines[sub]}"))  # fmt: skip
            lines[sub] = line
            _walk(value_node, sub, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines, problems)


@dataclass(frozen=True, slots=True)
class Lookalike:
    """A character pasted from a web page where YAML needs an ASCII one: where, and its fix."""

    line: int
    column: int  # 1-based, in the original text
    char: str
    replacement: str  # "" when the character is dropped

    @property
    def name(self) -> str:
        return f"U+{ord(self.char):04X} {unicodedata.name(self.char, 'UNNAMED')}"


#: Unicode spaces: YAML indents and separates with U+0020 only, so a no-break space (what a web
#: page's &nbsp; pastes as) becomes part of a key or value and shifts the structure.
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_QUOTES = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
           "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'}  # fmt: skip
#: typographic dashes, replaced only where YAML would read a "-" (a list item, "---")
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"


def _replacement(char: str) -> str | None:
    if char in _SPACES:
        return " "
    if char in _INVISIBLE:
        return ""
    if char in _QUOTES:
        return _QUOTES[char]
    if "\uff01" <= char <= "\uff5e":  # full-width ASCII (U+FF1A colon, U+FF02 quote, ...)
        return chr(ord(char) - 0xFEE0)
    return None


def _inside_word(line: str, col: int) -> bool:
    """An apostrophe between letters (U+2019 in a word) is text, not a quote."""
    return 0 < col < len(line) - 1 and line[col - 1].isalnum() and line[col + 1].isalnum()


def _beside_prose(line: str, col: int) -> bool:
    """Full-width punctuation next to CJK letters is prose (a description), not YAML syntax."""
    near = line[max(0, col - 1) : col] + line[col + 1 : col + 2]
    return any(ord(c) > 0x2E7F and unicodedata.category(c).startswith("L") for c in near)


_BLOCK_SCALAR = re.compile(r"(^|[:-]\s+)[|>][-+1-9]{0,2}\s*(#.*)?$")


def lookalikes(text: str) -> tuple[str, list[Lookalike]]:
    """``text`` with pasted look-alike characters made ASCII, and each one found.

    Text is left alone where any character is text: comments, strings in ASCII quotes, block
    scalars (``|``, ``>``), an apostrophe inside a word, full-width punctuation in CJK prose. A
    byte-order mark at the very start is allowed by YAML and kept.
    """
    found: list[Lookalike] = []
    out_lines: list[str] = []
    block_indent: int | None = None  # inside a block scalar: lines indented deeper than this
    for number, line in enumerate(text.split("\n"), 1):
        lead = len(line) - len(line.lstrip(" " + _SPACES + _INVISIBLE))
        if block_indent is not None:
            if not line.strip() or lead > block_indent:
                out_lines.append(line)
                continue
            block_indent = None
        out: list[str] = []
        quote, real_quote = "", False
        for col, char in enumerate(line):
            if number == 1 and col == 0 and char == "\ufeff":
                out.append(char)
                continue
            repl = None if real_quote else _replacement(char)
            if repl is None and not quote and char in _DASHES and col == lead:
                repl = "-"
            if repl is not None and char in _QUOTES and _inside_word(line, col):
                repl = None
            if repl is not None and "\uff01" <= char <= "\uff5e" and _beside_prose(line, col):
                repl = None
            effective = char if repl is None else repl
            if not quote and effective == "#" and (col == 0 or out[-1:] in ([" "], ["\t"])):
                out.append(line[col:])  # the rest is a comment
                break
            if quote and effective == quote:
                quote, real_quote = "", False
            elif (
                not quote
                and effective in "'\""
                and (col == lead or out[-1:] in ([" "], [":"], ["["], ["{"], [","]))
            ):
                quote, real_quote = effective, repl is None
            if repl is not None:
                found.append(Lookalike(number, col + 1, char, repl))
                out.append(repl)
            else:
                out.append(char)
        fixed = "".join(out)
        if _BLOCK_SCALAR.search(fixed.rstrip()):
            block_indent = lead
        out_lines.append(fixed)
    return "\n".join(out_lines), found


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
            _walk(node, (), lines, problems)
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
