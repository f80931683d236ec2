"""Builds the compiled twins of the proxy's wire core (limpet.proxy.wire._c*) and of its
per-exchange protocol code (limpet.proxy._chttp1, _cupstream and _cfast, from
src/limpet/proxy/http1.py, upstream.py and fast.py).

The extension is compiled by Cython from the very same pure-Python module the fallback runs
(src/limpet/proxy/wire/parser.py, response.py and rewrite.py, in Cython's pure-Python mode), so there is one source of truth
and the differential tests compare two builds of it. Everything else is in pyproject.toml.

The extension is optional: without Cython or a C compiler the build goes on without it and
limpet runs the pure-Python core (and says so in its log). LIMPET_NO_EXTENSIONS=1 at build time
skips it too. LIMPET_REQUIRE_EXTENSIONS=1 (scripts/bootstrap sets it) makes any failure, a
Cython error included, fail the build instead.

Each compiled module is linked with a stamp of the sources it was built from (see
src/limpet/proxy/wire/stamps.py): at import, a module whose stamp does not match the sources
beside it is refused, so an old build can never pass for a fresh one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
REQUIRED = bool(os.environ.get("LIMPET_REQUIRE_EXTENSIONS"))


def _stamps():  # type: ignore[no-untyped-def]
    """limpet.proxy.wire.stamps, loaded by path (limpet is not importable while it builds)."""
    spec = importlib.util.spec_from_file_location(
        "limpet_build_stamps", HERE / "src/limpet/proxy/wire/stamps.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _failed(what: str, exc: BaseException) -> None:
    """Say loudly what was not built; under LIMPET_REQUIRE_EXTENSIONS, fail."""
    print(f"limpet: {what} FAILED ({exc}); the pure-Python reference will run", file=sys.stderr)
    if REQUIRED:
        raise SystemExit(f"limpet: {what} failed and LIMPET_REQUIRE_EXTENSIONS is set") from exc


class OptionalBuildExt(build_ext):
    """A failed compile is a loud warning, not a failed install (the pure-Python core remains),
    unless LIMPET_REQUIRE_EXTENSIONS is set. A module that was not rebuilt keeps its old stamp,
    so limpet refuses it at import rather than running it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any toolchain failure
            _failed("building the compiled twins", exc)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            _failed(f"building {ext.name}", exc)


def _stamp_source(stamps, module: str) -> str:  # type: ignore[no-untyped-def]
    """The C file that stamps ``module`` with its sources' hash (rewritten only on change, so
    an unchanged module is not relinked)."""
    path = HERE / "build" / "stamps" / (module.rsplit(".", 1)[1] + "_stamp.c")
    text = stamps.stamp_c(module, stamps.source_hash(HERE / "src" / "limpet", module))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return str(path.relative_to(HERE))


def _newer(source: str, target: str) -> bool:
    """``source`` changed since ``target`` was made (or ``target`` is missing)."""
    return not os.path.exists(target) or os.path.getmtime(source) > os.path.getmtime(target)


def extensions() -> list:  # type: ignore[type-arg]
    if os.environ.get("LIMPET_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
        from Cython.Compiler.Errors import CompileError
        from setuptools import Extension
    except ImportError as exc:
        _failed("importing Cython", exc)
        return []
    stamps = _stamps()

    def extension(module: str, source: str) -> Extension:
        return Extension(module, [source, _stamp_source(stamps, module)])

    exts = [
        extension("limpet.proxy.wire._cparser", "src/limpet/proxy/wire/parser.py"),
        extension("limpet.proxy.wire._crewrite", "src/limpet/proxy/wire/rewrite.py"),
        extension("limpet.proxy.wire._cresponse", "src/limpet/proxy/wire/response.py"),
    ]
    directives = {"language_level": "3", "boundscheck": False, "wraparound": False}
    # the per-exchange protocol code (Downstream, Exchange): compiled as it is written, its
    # annotations read as documentation, not as C types (a `float` must stay a Python float,
    # a `bytes` parameter may be None where the reference accepts it), so both builds behave
    # alike. src/limpet/proxy/_chttp1.pxd adds C declarations to http1.py (Exchange and Deadline
    # as extension types with the same fields), which the pure-Python reference never reads
    try:
        protocol = cythonize(
            [
                extension("limpet.proxy._chttp1", "src/limpet/proxy/http1.py"),
                extension("limpet.proxy._cupstream", "src/limpet/proxy/upstream.py"),
                extension("limpet.proxy._cfast", "src/limpet/proxy/fast.py"),
            ],
            # (and with Python's indexing: it uses negative indices, as Python code does)
            compiler_directives={"language_level": "3", "annotation_typing": False},
            build_dir="build/cython",
            quiet=True,
            # Cython's own dependency check does not see _chttp1.pxd (it is named after the
            # module, not the source file): a .pxd newer than the C file regenerates it
            force=_newer("src/limpet/proxy/_chttp1.pxd", "build/cython/src/limpet/proxy/http1.c")
            or _newer("src/limpet/proxy/_cfast.pxd", "build/cython/src/limpet/proxy/fast.c"),
        )
        core = cythonize(exts, compiler_directives=directives, build_dir="build/cython", quiet=True)
    except CompileError as exc:  # Cython printed the error above
        _failed(f"Cython compiling {exc}", exc)
        return []
    return [*core, *protocol]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
