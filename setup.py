"""Build hook: compile the hot modules with mypyc where that is possible.

Everything else about the package lives in pyproject.toml. The compiled
modules are the same typed sources as the pure-Python ones, which are used
instead on interpreters other than CPython, where no C compiler works, or
when ``TORSION_PURE_PYTHON=1`` is set.
"""

import os
import platform
import sys
import tempfile
from pathlib import Path

from setuptools import setup

# The Deferred engine with its coroutine driver (compiled together: a
# compiled class cannot be subclassed by an interpreted one) and the
# scheduled-call handles. tests/conftest.py and the Makefile read this list.
COMPILED = [
    "src/torsion/defer/_deferred.py",
    "src/torsion/defer/_coroutines.py",
    "src/torsion/internet/_delayed.py",
]


def _can_compile() -> bool:
    """Return whether a C extension for this interpreter builds here."""
    from distutils.ccompiler import new_compiler
    from distutils.errors import CCompilerError, DistutilsError
    from distutils.sysconfig import customize_compiler, get_python_inc

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch, "probe.c")
        probe.write_text("#include <Python.h>\nint probe(void) { return 0; }\n")
        try:
            compiler.compile([str(probe)], output_dir=scratch, include_dirs=[get_python_inc()])
        except (CCompilerError, DistutilsError, OSError):
            return False
    return True


def _extensions() -> list:
    if os.environ.get("TORSION_PURE_PYTHON") == "1":
        return []
    if platform.python_implementation() != "CPython":
        return []
    if not _can_compile():
        print("torsion: no working C compiler; installing pure Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3", group_name="torsion_speedups")


setup(ext_modules=_extensions())
