"""The node-to-line map behind every lint finding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.k8s.yamlnodes import expand_lists, lookalikes, parse, tab_indents

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


# --- look-alike characters pasted from web pages ------------------------------------------------


def test_lookalikes_found_where_yaml_reads_them() -> None:
    text = "a:\u00a0b\n  \u00a0sessionAffinity: \u201cClientIP\u201d\nname\uff1a x\n\u2013 item\n"
    fixed, found = lookalikes(text)
    assert fixed == 'a: b\n   sessionAffinity: "ClientIP"\nname: x\n- item\n'
    assert [(o.line, o.column, o.replacement) for o in found] == [
        (1, 3, " "), (2, 3, " "), (2, 21, '"'), (2, 30, '"'), (3, 5, ":"), (4, 1, "-"),
    ]  # fmt: skip
    assert found[0].name == "U+00A0 NO-BREAK SPACE"


def test_text_where_any_character_is_text_is_left_alone() -> None:
    text = (
        "# a comment: it\u2019s \u201cfine\u201d\u00a0here\n"
        'description: "it\u2019s \u201cquoted\u201d already"\n'
        "note: the chat\u2019s session\n"
        "title: \u8aac\u660e\uff1a\u30c1\u30e3\u30c3\u30c8\n"
        "script: |\n"
        "  echo \u201chello\u201d\u00a0\n"
        "  \u2013 not a list\n"
        "after: x\n"
    )
    assert lookalikes(text) == (text, [])


def test_smart_quotes_delimiting_a_value_are_fixed_inside_too() -> None:
    fixed, found = lookalikes("neg: \u2018{\u201cingress\u201d: true}\u2019\n")
    assert fixed == "neg: '{\"ingress\": true}'\n" and len(found) == 4


ASCII_YAML = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\n"), max_size=200
)


@settings(max_examples=200, deadline=None)
@given(ASCII_YAML)
def test_ascii_text_is_never_changed(text: str) -> None:
    assert lookalikes(text) == (text, [])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.from_regex(r"[a-z]{1,8}: [a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=6),
       st.data())  # fmt: skip
def test_a_no_break_space_in_any_indentation_is_found(
    lines: list[str], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(lines) - 1))
    pasted = [("  " + line if n else line) for n, line in enumerate(lines)]
    pasted[i] = "\u00a0" + pasted[i]
    fixed, found = lookalikes("\n".join(pasted))
    assert [(o.line, o.column) for o in found] == [(i + 1, 1)]
    assert fixed == "\n".join(pasted).replace("\u00a0", " ")
