"""Builds the compiled twins of the proxy's wire core (limpet.proxy.wire._c*) and of its
per-exchange protocol code (limpet.proxy._chttp1 and _cupstream, from src/limpet/proxy/http1.py
and upstream.py).

The extension is compiled by Cython from the very same pure-Python module the fallback runs
(src/limpet/proxy/wire/parser.py, response.py and rewrite.py, in Cython's pure-Python mode), so there is one source of truth
and the differential tests compare two builds of it. Everything else is in pyproject.toml.

The extension is optional: without Cython or a C compiler the build goes on without it and
limpet runs the pure-Python core (and says so in its log). LIMPET_NO_EXTENSIONS=1 at build time
skips it too.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install (the pure-Python core remains)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any toolchain failure
            print(
                f"limpet: compiled wire core not built ({exc}); pure Python it is", file=sys.stderr
            )

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"limpet: {ext.name} not built ({exc}); pure Python it is", file=sys.stderr)


def _newer(source: str, target: str) -> bool:
    """``source`` changed since ``target`` was made (or ``target`` is missing)."""
    return not os.path.exists(target) or os.path.getmtime(source) > os.path.getmtime(target)


def extensions() -> list:  # type: ignore[type-arg]
    if os.environ.get("LIMPET_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("limpet: Cython is missing; the compiled wire core is not built", file=sys.stderr)
        return []
    exts = [
        Extension("limpet.proxy.wire._cparser", ["src/limpet/proxy/wire/parser.py"]),
        Extension("limpet.proxy.wire._crewrite", ["src/limpet/proxy/wire/rewrite.py"]),
        Extension("limpet.proxy.wire._cresponse", ["src/limpet/proxy/wire/response.py"]),
    ]
    directives = {"language_level": "3", "boundscheck": False, "wraparound": False}
    # the per-exchange protocol code (Downstream, Exchange): compiled as it is written, its
    # annotations read as documentation, not as C types (a `float` must stay a Python float,
    # a `bytes` parameter may be None where the reference accepts it), so both builds behave
    # alike. src/limpet/proxy/_chttp1.pxd adds C declarations to http1.py (Exchange and Deadline
    # as extension types with the same fields), which the pure-Python reference never reads
    protocol = cythonize(
        [
            Extension("limpet.proxy._chttp1", ["src/limpet/proxy/http1.py"]),
            Extension("limpet.proxy._cupstream", ["src/limpet/proxy/upstream.py"]),
        ],
        # (and with Python's indexing: it uses negative indices, as Python code does)
        compiler_directives={"language_level": "3", "annotation_typing": False},
        build_dir="build/cython",
        quiet=True,
        # Cython's own dependency check does not see _chttp1.pxd (it is named after the
        # module, not the source file): a .pxd newer than the C file regenerates it
        force=_newer("src/limpet/proxy/_chttp1.pxd", "build/cython/src/limpet/proxy/http1.c"),
    )
    return [
        *cythonize(exts, compiler_directives=directives, build_dir="build/cython", quiet=True),
        *protocol,
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
