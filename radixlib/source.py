"""Showing code in the chapters: the library's own source, and SGLang's beside it.

The chapters never paste code: they display what the library actually runs, so the
book and the library cannot drift apart. SGLang's code is read from the installed
wheel's files (located with ``importlib.util.find_spec``, cut out with ``ast``): nothing
of SGLang is imported or copied, it is quoted as it stands.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
from html import escape
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import pygments
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


class Source(NamedTuple):
    """A piece of source: plain text for ``print``/diffs, highlighted HTML in Jupyter."""
    name: str
    code: str

    def __repr__(self) -> str:
        return f"# {self.name}\n{self.code}"

    def _repr_html_(self) -> str:
        return _highlight(self.code)


class SideBySide(NamedTuple):
    """Two sources in two columns (ours left, SGLang's right); one after the other as text."""
    left: Source
    right: Source

    def __repr__(self) -> str:
        return f"{self.left!r}\n\n{self.right!r}"

    def _repr_html_(self) -> str:
        # Two fixed halves, each scrolling sideways on its own: a long line on one side never
        # pushes the other out of view.
        cells = "".join(f'<td style="vertical-align: top; width: 50%"><b>{escape(s.name)}</b>'
                        f'<div style="overflow-x: auto">{_highlight(s.code)}</div></td>' for s in self)
        return (f'<table class="side-by-side" style="font-size: 85%; table-layout: fixed; width: 100%">'
                f"<tr>{cells}</tr></table>")


def show_source(obj) -> Source:
    """The library's own source of ``obj`` (a function, method, class or module), dedented."""
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    module = inspect.getmodule(obj).__name__
    return Source(f"{module}.{name}" if module != name else name, textwrap.dedent(inspect.getsource(obj)))


def sglang_source(module: str, qualname: str) -> Source:
    """SGLang's source of ``qualname`` (``"RadixCache.evict"``) in ``module``, from the installed wheel.

    ``module`` is dotted (``"sglang.srt.mem_cache.radix_cache"``). Only the file is read; the code is dedented.
    """
    path = module_file(module)
    text = path.read_text()
    node = _find(ast.parse(text), qualname.split("."), f"{module}.{qualname}")
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = text.splitlines()[first - 1: node.end_lineno]
    return Source(f"{module}.{qualname}  ({_version(module)})", textwrap.dedent("\n".join(lines) + "\n"))


def beside(ours, module: str, qualname: str) -> SideBySide:
    """Our ``ours`` (a function or method) beside SGLang's ``module.qualname``."""
    return SideBySide(show_source(ours), sglang_source(module, qualname))


def module_file(module: str) -> Path:
    """The file of ``module`` inside its top-level package, found without importing anything."""
    top, *rest = module.split(".")
    path = Path(_package_dir(top)).joinpath(*rest).with_suffix(".py")
    if not path.is_file():
        raise ModuleNotFoundError(f"{module} is not in the installed {top}")
    return path


def _package_dir(top: str) -> str:
    """Where package ``top`` lives; a package already registered (even bare) is asked first."""
    locations = getattr(sys.modules.get(top), "__path__", None)
    if not locations:
        spec = importlib.util.find_spec(top)
        locations = spec.submodule_search_locations if spec else None
    if not locations:
        raise ModuleNotFoundError(f"{top} is not installed (the Makefile installs it: pyproject.toml's [faithful] pin)")
    return list(locations)[0]


def _find(tree: ast.AST, names: list[str], full: str) -> ast.AST:
    """The class/function definition ``names[0].names[1]...`` in ``tree``."""
    node = tree
    for name in names:
        found = [n for n in ast.iter_child_nodes(node)
                 if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
        if not found:
            raise LookupError(f"{full} is not defined in the installed source")
        node = found[0]
    return node


def _version(module: str) -> str:
    """The installed distribution's version (its metadata only)."""
    top = module.split(".")[0]
    return f"{top} {version(top)}"


def _highlight(code: str) -> str:
    return pygments.highlight(code, PythonLexer(), HtmlFormatter(noclasses=True))
