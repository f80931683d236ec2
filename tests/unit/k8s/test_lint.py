"""The lint corpus: every good manifest is clean, every bad one yields exactly its findings."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from limpet.cli import main
from limpet.k8s.lint import RULES, has_errors, lint_sources

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "k8s"
GOOD = sorted((CORPUS / "good").glob("*.yaml"))
BAD = sorted((CORPUS / "bad").glob("*.yaml"))
# "# expect: RULE LINE[:COLUMN] [warning]"; a finding about one character carries its column
EXPECT = re.compile(r"^# expect: (\S+) (\d+(?::\d+)?)(?: (warning))?$", re.M)


def expected(path: Path) -> Counter[tuple[str, str, str]]:
    return Counter(
        (rule, where, sev or "error") for rule, where, sev in EXPECT.findall(path.read_text())
    )


def lint_file(path: Path) -> Counter[tuple[str, str, str]]:
    findings = lint_sources([(str(path), path.read_text())])
    return Counter(
        (f.rule, f"{f.line}:{f.column}" if f.column else str(f.line), f.severity) for f in findings
    )


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_manifest_is_clean(path: Path) -> None:
    assert lint_file(path) == Counter()


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_manifest_has_its_findings(path: Path) -> None:
    want = expected(path)
    assert want, f"{path.name} declares no '# expect:' line"
    assert lint_file(path) == want


def test_corpus_covers_every_rule() -> None:
    seen = {rule for path in BAD for rule, _, _ in expected(path)}
    assert seen == set(RULES)


def test_findings_carry_file_hint_and_severity() -> None:
    path = CORPUS / "bad" / "timeout-range.yaml"
    (finding,) = lint_sources([("svc.yaml", path.read_text())])
    assert finding.file == "svc.yaml"
    assert finding.hint and finding.message
    assert has_errors([finding])


def test_backendconfig_in_another_file_is_found() -> None:
    gke = (CORPUS / "good" / "gke-cookie.yaml").read_text()
    service, rest = gke.split("---\n", 1)
    findings = lint_sources([("svc.yaml", service), ("bc.yaml", "---\n" + rest)])
    assert findings == []
    alone = lint_sources([("svc.yaml", service)])
    assert [f.rule for f in alone] == ["backendconfig-undefined"]


def test_cli_exit_codes_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "lint", str(GOOD[0])]) == 0
    assert (
        main(["k8s", "lint", "--format", "json", str(CORPUS / "bad" / "timeout-range.yaml")]) == 1
    )
    out = capsys.readouterr().out
    (finding,) = json.loads(out)
    assert finding["rule"] == "affinity-timeout-range" and finding["line"] == 11
    # warnings alone do not fail the run
    assert main(["k8s", "lint", str(CORPUS / "bad" / "clientip-cluster-policy.yaml")]) == 0


def test_cli_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    text = (CORPUS / "bad" / "tab-indent.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["k8s", "lint", "-"]) == 1
    assert "<stdin>:5: error [yaml-tab-indent]" in capsys.readouterr().out


def test_cli_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "lint", "/nonexistent/x.yaml"]) == 1
    assert "cannot read /nonexistent/x.yaml" in capsys.readouterr().err


def test_colour_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(CORPUS / "bad" / "timeout-range.yaml")
    main(["k8s", "lint", "--color", "always", bad])
    assert "\033[31merror" in capsys.readouterr().out
    main(["k8s", "lint", bad])  # captured output is not a tty
    assert "\033[" not in capsys.readouterr().out


PASTED = sorted((CORPUS / "bad").glob("pasted-*.yaml"))


@pytest.mark.parametrize("path", PASTED, ids=lambda p: p.name)
def test_pasted_lookalikes_hide_mistakes_without_the_check(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin of the corpus test: without the look-alike pass these files lint (nearly) clean
    although kubectl refuses or misreads them."""
    monkeypatch.setattr("limpet.k8s.lint.lookalikes", lambda text: (text, []))
    findings = lint_sources([(str(path), path.read_text())])
    want = expected(path)
    assert len(findings) < sum(want.values())
    assert not any(f.rule == "affinity-misplaced" for f in findings)


def test_lint_fix_rewrites_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = CORPUS / "bad" / "pasted-nbsp-selector.yaml"
    path = tmp_path / "chat.yaml"
    path.write_text(source.read_text())
    path.chmod(0o640)
    assert main(["k8s", "lint", "--fix", str(path)]) == 1  # the misplaced key is still there
    out = capsys.readouterr()
    assert "replaced 2 character(s)" in out.err
    assert "unicode-lookalike" not in out.out and "[affinity-misplaced]" in out.out
    fixed = path.read_text()
    assert "\u00a0" not in fixed and "    sessionAffinity: ClientIP" in fixed
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["chat.yaml"]  # no temporary left behind
    # the fixed file lints without look-alikes; fixing again changes nothing
    assert main(["k8s", "lint", "--fix", str(path)]) == 1
    assert "replaced" not in capsys.readouterr().err and path.read_text() == fixed


def test_lint_fix_of_stdin_prints_the_fixed_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    text = (CORPUS / "bad" / "pasted-fullwidth.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["k8s", "lint", "--fix", "-"]) == 0
    out = capsys.readouterr().out
    assert "nginx.ingress.kubernetes.io/affinity: cookie" in out and "\uff1a" not in out


def test_text_report_shows_the_column(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "bad" / "pasted-fullwidth.yaml"
    assert main(["k8s", "lint", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:9:41: error [unicode-lookalike] U+FF1A FULLWIDTH COLON" in out


def test_an_input_with_no_object_is_not_no_findings() -> None:
    for text in ("", "# only a comment\n", "---\n"):
        (finding,) = lint_sources([("empty.yaml", text)])
        assert (finding.rule, finding.line, finding.severity) == ("not-a-manifest", 1, "error")
    (finding,) = lint_sources([("list.yaml", "- a\n- b\n")])
    assert finding.rule == "not-a-manifest" and "list" in finding.message


def test_docs_list_every_rule() -> None:
    """docs/kubernetes.md's rule table names exactly the rules the linter has."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "kubernetes.md").read_text()
    table = docs.split("## Lint rules", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M))
    assert documented == set(RULES)
