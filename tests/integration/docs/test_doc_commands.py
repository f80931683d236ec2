"""Every command shown in README.md and docs/*.md is run by a test, as written.

The fenced blocks are read from the documents themselves, so a command added to the docs is
covered (or this file fails, saying which command no test runs). Each command is one of:
- run: the block is executed with bash as a user pastes it (``set -eo pipefail``). Servers in it
  (``limpet whoami|proxy|hub``, with or without ``&``) are started by the test in order and waited
  for until they listen, as a user waits for a banner; the commands after them run as written.
  The only changes: loopback ports become free ports (other tests share the machine), Redis/NATS
  URLs point at the test's brokers, and a proxy shown without ``--listen`` gets one. A client
  command whose target no server in its block provides (the `check` output examples) gets one the
  test starts: `limpet proxy` in front of three `limpet whoami`, sticky or not as the example shows.
- synopsis: a usage line (``[--flag X]``, ``HOST:PORT``, ``...``), an example against a host
  that is not loopback, or one that names a deployed host's files (``/etc/limpet/…``,
  ``/run/secrets/…``): each ``--flag`` must be one the command accepts.
- pytest: the per-area test command runs with ``--collect-only`` (the suite runs the tests).
- bench: a benchmark runs with ``--help`` (benchmarks are run on a quiet machine, not in CI);
  bench/proxy/hotpath.py has no flags and runs whole (a few seconds, in memory).
- fuzz: a documented fuzz run runs for a few hundred inputs instead of its long run.
- elsewhere: ``limpet up`` (8080 fixed) and the node client are run by the tests named below.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from limpet.cli import build_parser
from tests.conftest import BrokerServer
from tests.support.procs import Procs, free_port, limpet_env

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_COMMANDS = {"yaml", "json", "python", "js", "javascript", "html", "toml", "ini", "text", "http"}
COMMAND = re.compile(r"^(\. \.venv/bin/activate|limpet |curl |node |\.venv/bin/python |python )")
SERVER = re.compile(r"^limpet (whoami|proxy|hub)\b")
LOOPBACK_PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d{4,5})\b")
#: a host that is not loopback: an http(s) URL elsewhere, an IPv4 address outside 127/8, or a
#: URL naming a host (redis+cluster://redis-0.redis:6379)
REMOTE = re.compile(
    r"https?://(?!127\.0\.0\.1)|(?<![\d.])(?!127\.)\d{1,3}(?:\.\d{1,3}){3}(?![\d.])"
    r"|://(?!127\.|localhost\b)[A-Za-z]"
)
#: paths that exist on a deployed host, not here (/etc/limpet/…, /run/secrets/…)
DEPLOYMENT_FILES = re.compile(r"(?<![\w.~])/(etc|run)/")
PLACEHOLDER = re.compile(r"\[|\.\.\.|(?<![$\w-])[A-Z]{2,}(?![a-z])|\w\|\w")
#: commands another test runs as written
ELSEWHERE = {
    "limpet up": "tests/integration/tools/test_up.py",
    "node tests/e2e/": "tests/e2e/engineio/test_engineio_node.py",
}


@dataclass
class Command:
    doc: str
    line: int
    text: str
    shown: str = ""  # the output a console block shows under it

    @property
    def kind(self) -> str:
        if "-m pytest" in self.text:
            return "pytest"
        if "bench/" in self.text:
            return "bench"
        if "tests/fuzz/" in self.text:
            return "fuzz"
        if PLACEHOLDER.search(self.text.replace('"$LIMPET_SECRET"', "")):
            return "synopsis"
        if DEPLOYMENT_FILES.search(self.text):  # a production host's own files: flags checked
            return "synopsis"
        if self.text.startswith("node tests/e2e/"):
            return "elsewhere"
        # `limpet up` holds fixed ports (8080, 8081): run by its own tests, unless the example
        # shows it refusing to start, which runs here as written
        if self.text.startswith("limpet up") and not re.search(
            r"^limpet up: error:", self.shown, re.M
        ):
            return "elsewhere"
        return "run"


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    commands: list[Command] = field(default_factory=list)

    @property
    def offline(self) -> bool:
        """An example against a real host (app.example.com, a 10.0.0.1 broker): its flags are
        checked only; a test sends nothing beyond loopback."""
        return any(REMOTE.search(c.text) for c in self.commands)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks() -> list[Block]:
    out: list[Block] = []
    for path in DOCS:
        text = path.read_text()
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if m.group(1) in NOT_COMMANDS:
                continue
            start = text.count("\n", 0, m.start()) + 2
            block = Block(path.relative_to(ROOT).as_posix(), start - 1, m.group(1))
            lines = m.group(2).splitlines()
            i = 0
            while i < len(lines):
                number, raw = start + i, lines[i]
                i += 1
                if block.lang == "console":
                    if not raw.startswith("$ "):
                        if block.commands:
                            block.commands[-1].shown += raw + "\n"
                        continue
                    raw = raw[2:]
                while raw.rstrip().endswith("\\") and i < len(lines):
                    raw = raw.rstrip()[:-1] + " " + lines[i].strip()
                    i += 1
                cmd = re.sub(r"\s+#\s.*$", "", raw).strip()
                if COMMAND.match(cmd) and not re.match(r"^limpet [\w-]+: ", cmd):
                    block.commands.append(Command(block.doc, number, cmd))
            if block.commands:
                out.append(block)
    return out


BLOCKS = read_blocks()
COMMANDS = [c for b in BLOCKS for c in b.commands]


def by_kind(kind: str) -> list[Command]:
    offline = {(c.doc, c.line) for b in BLOCKS if b.offline for c in b.commands}
    return [
        c
        for c in COMMANDS
        if (c.kind == kind and (c.doc, c.line) not in offline)
        or (kind == "synopsis" and (c.doc, c.line) in offline and c.kind == "run")
    ]


def test_every_command_is_covered() -> None:
    assert len(COMMANDS) > 40  # the reader found the docs' commands
    kinds = {c.kind for c in COMMANDS}
    assert {"run", "synopsis", "pytest"} <= kinds
    for prefix, where in ELSEWHERE.items():
        assert (ROOT / where).exists(), f"{prefix} is said to be run by {where}"


# --- synopsis lines: every flag exists -----------------------------------------------------------
def parser_for(words: list[str]) -> object:
    import argparse

    parser: argparse.ArgumentParser = build_parser()
    for word in words[1:]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
    return parser


SYNOPSIS = [c for c in by_kind("synopsis") if c.text.startswith("limpet ")]


@pytest.mark.parametrize("cmd", SYNOPSIS, ids=[f"{c.doc}:{c.line}" for c in SYNOPSIS])
def test_synopsis_flags_exist(cmd: Command) -> None:
    parser = parser_for(cmd.text.split())
    known = {o for a in parser._actions for o in a.option_strings}  # type: ignore[attr-defined]
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cmd.text))
    assert flags <= known, f"{cmd.doc}:{cmd.line}: {sorted(flags - known)} not accepted"


def test_synopsis_check_can_fail() -> None:
    parser = parser_for(["limpet", "proxy"])
    known = {o for a in parser._actions for o in a.option_strings}  # type: ignore[attr-defined]
    assert "--listen" in known and "--listn" not in known


# --- per-area test commands and benchmarks -------------------------------------------------------
def env() -> dict[str, str]:
    base = limpet_env({"LIMPET_SECRET": "docs-test-secret"})
    base["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{base.get('PATH', '/usr/bin:/bin')}"
    return base


def bash(script: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script],
        cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout,
        start_new_session=True,
    )  # fmt: skip


PYTEST = by_kind("pytest")


@pytest.mark.parametrize("cmd", PYTEST, ids=[f"{c.doc}:{c.line}" for c in PYTEST])
def test_area_test_commands_collect(cmd: Command) -> None:
    assert cmd.text.startswith(".venv/bin/python -m pytest"), "run the venv's python, as written"
    result = bash(cmd.text + " --collect-only", ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # "-q --collect-only" lists "FILE: COUNT"; every area has tests
    assert re.search(r"^tests/\S+: [1-9]|^[1-9]\d* tests? collected", result.stdout, re.M), (
        result.stdout[-500:]
    )


BENCH = by_kind("bench")


@pytest.mark.parametrize("cmd", BENCH, ids=[f"{c.doc}:{c.line}" for c in BENCH])
def test_benchmark_commands_parse(cmd: Command) -> None:
    script = re.sub(r"^python ", ".venv/bin/python ", cmd.text)  # "python is the venv's" (doc)
    script = re.sub(r"(bench/\S+\.py).*", r"\1 --help", script)
    result = bash(script, ROOT, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


FUZZ = by_kind("fuzz")


@pytest.mark.parametrize("cmd", FUZZ, ids=[f"{c.doc}:{c.line}" for c in FUZZ])
def test_fuzz_commands_run_briefly(cmd: Command, tmp_path: Path) -> None:
    """A documented fuzz run, cut to a few hundred inputs (its length is the user's choice)."""
    pytest.importorskip("atheris")
    script = re.sub(r"(tests/fuzz/\S+\.py).*", r"\1 -runs=300", cmd.text)
    result = bash(script, ROOT, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


# --- runnable blocks ----------------------------------------------------------------------------
RUN_BLOCKS = [b for b in BLOCKS if not b.offline and any(c.kind == "run" for c in b.commands)]


class Ports:
    """Loopback ports of the docs -> free ports here; Redis/NATS -> the test's brokers."""

    def __init__(self, redis: BrokerServer, nats: BrokerServer) -> None:
        self.map: dict[str, str] = {"6379": str(redis.port), "4222": str(nats.port)}

    def __call__(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            return self.map.setdefault(m.group(1), str(free_port()))

        return LOOPBACK_PORT.sub(sub, text)

    def port(self, doc_port: str) -> int:
        return int(self.map.setdefault(doc_port, str(free_port())))


def listen_port(text: str) -> str:
    m = re.search(r"--listen\s+127\.0\.0\.1:(\d+)", text)
    return m.group(1) if m else "8080"  # proxy's default (docs/proxy.md)


def start_example_server(procs: Procs, port: int, shown: str) -> None:
    """The endpoint a `check` output example talks to: three whoami behind a proxy."""
    backends = [f"--backend=web-{i}={procs.whoami(f'web-{i}')}" for i in (1, 2, 3)]
    affinity = ["--affinity", "none"] if "NOT STICKY" in shown else ["--cookie-ttl", "120"]
    procs.limpet("proxy", "--listen", f"127.0.0.1:{port}", *backends, "--secret", "s",
                 *affinity, wait_for=("127.0.0.1", port))  # fmt: skip


def expected_status(cmd: Command) -> int | None:
    """0, 1, or None for 'not 0' as the console block shows it; 0 for sh blocks."""
    if re.search(r"^limpet [\w-]+: error:", cmd.shown, re.M):
        return None
    return 1 if "NOT STICKY" in cmd.shown else 0


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b.id for b in RUN_BLOCKS])
def test_block_runs_as_written(
    block: Block, procs: Procs, redis_server: BrokerServer, nats_server: BrokerServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")  # `. .venv/bin/activate` from the checkout
    ports = Ports(redis_server, nats_server)
    servers: dict[int, subprocess.Popen[bytes]] = {}
    served: set[int] = set()
    for cmd in block.commands:
        if cmd.kind != "run":
            continue
        text = cmd.text
        if SERVER.match(text):
            text = text.removesuffix("&").strip()
            if "--listen" not in text and text.startswith("limpet proxy"):
                text += " --listen 127.0.0.1:8080"
            port = ports.port(listen_port(text))
            if port in servers:  # alternatives on one port (docs/hub.md): one at a time
                procs.kill(servers.pop(port))
            served.add(port)
            servers[port] = procs.start(
                ["bash", "-c", "exec " + ports(text)], env=env(), cwd=tmp_path,
                wait_for=("127.0.0.1", port), timeout=30,
            )  # fmt: skip
            continue
        for doc_port in LOOPBACK_PORT.findall(text):
            if ports.port(doc_port) not in served:
                start_example_server(procs, ports.port(doc_port), cmd.shown)
                served.add(ports.port(doc_port))
        result = bash(ports(text), tmp_path)
        where = f"{cmd.doc}:{cmd.line}: {text}\n{result.stdout[-1500:]}{result.stderr[-1500:]}"
        assert "Traceback" not in result.stderr, where
        want = expected_status(cmd)
        if want is None:
            assert result.returncode != 0, where
        else:
            assert result.returncode == want, where
    for proc in servers.values():
        assert proc.poll() is None, f"a server of {block.id} died:\n{procs.output(proc)}"


def test_the_tour_is_among_the_blocks_run() -> None:
    ids = {b.id for b in RUN_BLOCKS}
    readme = [i for i in ids if i.startswith("README.md")]
    assert readme, "the README tour is run"
    assert any(i.startswith("docs/hub.md") for i in ids)
