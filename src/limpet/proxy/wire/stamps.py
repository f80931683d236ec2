"""The source stamp of the compiled twins: which sources each compiled module was built from.

Each compiled module (the wire core's ``_cparser``, ``_cresponse``, ``_crewrite`` and the
protocol code's ``_chttp1``, ``_cupstream``, ``_cfast``) is linked with a tiny C object that setup.py
generates: a string ``LIMPET-SOURCE-SHA256:<hex>``, the SHA-256 of the sources it was compiled
from (the ``.py`` file and its augmenting ``.pxd``, if any; ``source_hash``). At import time
``check`` reads that stamp from the module's file (before the module is loaded) and hashes the
sources beside it; a module whose stamp differs was built from other sources and is refused,
with the reason, so a stale build can never run and be logged as "compiled".

setup.py loads this file by path (it runs before limpet is importable), so it imports nothing
of limpet. The decision is all or nothing (limpet.proxy.wire selects; limpet.proxy.builds
follows): a compiled wire core never runs with Python protocol code, or the reverse.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import mmap
import os
from pathlib import Path

#: compiled module -> its sources, relative to the ``limpet`` package directory
SOURCES: dict[str, tuple[str, ...]] = {
    "limpet.proxy.wire._cparser": ("proxy/wire/parser.py",),
    "limpet.proxy.wire._crewrite": ("proxy/wire/rewrite.py",),
    "limpet.proxy.wire._cresponse": ("proxy/wire/response.py",),
    "limpet.proxy._chttp1": ("proxy/http1.py", "proxy/_chttp1.pxd"),
    "limpet.proxy._cupstream": ("proxy/upstream.py",),
    "limpet.proxy._cfast": ("proxy/fast.py", "proxy/_cfast.pxd"),
}
MARK = b"LIMPET-SOURCE-SHA256:"
#: a refused (stale) module is an error instead of a fallback where this is set (the test
#: suite sets it: a stale build must fail the tests, not quietly test the reference twice)
STRICT_ENV = "LIMPET_STRICT_BUILD"


class StaleBuild(ImportError):
    """A compiled module was built from sources other than the ones beside it."""


def source_hash(package_dir: Path, module: str) -> str:
    """The SHA-256 of ``module``'s sources (each file's name and bytes, in order)."""
    digest = hashlib.sha256()
    for rel in SOURCES[module]:
        digest.update(rel.encode() + b"\0")
        digest.update((package_dir / rel).read_bytes())
    return digest.hexdigest()


def stamp_c(module: str, digest: str) -> str:
    """The C source of the stamp linked into ``module`` (setup.py writes and compiles it)."""
    symbol = "limpet_source_stamp_" + module.rsplit(".", 1)[1]
    return (
        f"/* the sources {module} was built from (limpet.proxy.wire.stamps) */\n"
        f"__attribute__((used)) const char {symbol}[] = "
        f'"{MARK.decode()}{digest}";\n'
    )


def read_stamp(path: Path) -> str | None:
    """The stamp in a compiled module's file, or None when it has none."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        at = data.find(MARK)
        if at < 0:
            return None
        start = at + len(MARK)
        return data[start : start + 64].decode("ascii", "replace")


def problem(module: str, package_dir: Path | None = None) -> str | None:
    """Why compiled ``module`` must not run (not built, no stamp, stale), or None if fresh."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(_EXT_SUFFIXES):
        return f"{module} is not built"
    origin = Path(spec.origin)
    if package_dir is None:  # the limpet package directory, above the module's own
        package_dir = origin.parents[module.count(".") - 1]
    stamp = read_stamp(origin)
    if stamp is None:
        return f"{module} carries no source stamp (built by an older setup.py)"
    try:
        now = source_hash(package_dir, module)
    except OSError as exc:
        return f"{module}: its sources cannot be read ({exc})"
    if stamp != now:
        return (
            f"{module} is stale: built from sources {stamp[:12]}, "
            f"the sources beside it are {now[:12]} (rebuild: scripts/bootstrap)"
        )
    return None


def check(modules: tuple[str, ...] = tuple(SOURCES)) -> str | None:
    """Why the compiled build must not run, or None: every module built and fresh.

    Nothing built at all is the plain fallback (no compiler at install time). A stale module,
    or a partial build (some built, some not), is refused too, and raises ``StaleBuild`` where
    ``LIMPET_STRICT_BUILD`` is set (the test suite): the sources changed and the build was not
    redone, or a module failed to build.
    """
    reasons = [r for r in (problem(m) for m in modules) if r is not None]
    if not reasons:
        return None
    reason = "; ".join(reasons)
    unbuilt = sum(1 for r in reasons if r.endswith(" is not built"))
    if os.environ.get(STRICT_ENV) and unbuilt < len(modules):
        raise StaleBuild(f"refusing the compiled build: {reason}")
    return reason


_EXT_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def main() -> int:
    """For scripts/bootstrap (``stamps.main()``): exit 0 when every compiled module is built and
    fresh, else 1 with the reason (scripts/bootstrap asks this before and after it builds)."""
    reason = check()
    print(reason or "every compiled module is built from the sources beside it")
    return 0 if reason is None else 1
