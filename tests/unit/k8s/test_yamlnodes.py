"""The node-to-line map behind every lint finding."""

from __future__ import annotations

from limpet.k8s.yamlnodes import expand_lists, parse, tab_indents

TEXT = """\
# comment
apiVersion: v1
kind: Service
metadata:
  name: a
spec:
  ports:
    - port: 80
    - port: 81
---
---
kind: List
items:
  - kind: Service
    metadata: {name: b}
"""


def test_lines_of_keys_and_items() -> None:
    documents, problems = parse(TEXT)
    assert problems == []
    first, second = documents
    assert first.start_line == 2
    assert first.line("metadata", "name") == 5
    assert first.line("spec", "ports", 1) == 9
    assert first.line("spec", "ports", 1, "port") == 9
    assert first.line("spec", "nope", "deeper") == 6  # the longest known prefix
    assert second.index == 2  # the empty document in between is counted, not returned
    (item,) = expand_lists([second])
    assert (item.kind, item.name, item.start_line, item.line("metadata")) == (
        "Service",
        "b",
        14,
        15,
    )


def test_tabs_and_errors_are_problems() -> None:
    assert list(tab_indents("a:\n\tb: 1\n  \tc: 2\nd: '\t'\n")) == [2, 3]
    documents, problems = parse("a: 1\n---\nb: [\n")
    assert [d.obj for d in documents] == [{"a": 1}]  # what parsed before the error is kept
    assert [(p.rule, p.line) for p in problems] == [("yaml-invalid", 4)]


def test_whole_and_byte_by_byte_prefixes_never_raise() -> None:
    for end in range(len(TEXT) + 1):
        parse(TEXT[:end])
    parse(TEXT + "\x00garbage: [")
