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
