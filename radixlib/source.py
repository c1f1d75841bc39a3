"""Showing code in the chapters: the library's own source, read at run time.

The chapters never paste code: they display what the library actually runs, so the
book and the library cannot drift apart.
"""
from __future__ import annotations

import inspect
from typing import NamedTuple

import pygments
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


class Source(NamedTuple):
    """A piece of the library's source: plain text for ``print``/diffs, highlighted HTML in Jupyter."""
    name: str
    code: str

    def __repr__(self) -> str:
        return f"# {self.name}\n{self.code}"

    def _repr_html_(self) -> str:
        return pygments.highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True))


def show_source(obj) -> Source:
    """The library's own source of ``obj`` (a function, method, class or module)."""
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    module = inspect.getmodule(obj).__name__
    return Source(f"{module}.{name}" if module != name else name, inspect.getsource(obj))
