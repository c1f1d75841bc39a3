"""Exercises: the reader writes the code, the library checks it.

A chapter's exercise cell holds a stub under ``# your code here``; the cell after it
calls ``check(name, answer)``. The check never raises, so an unanswered chapter runs top
to bottom, and it prints one of three verdicts::

    not answered yet (hint: ...)                            the stub is still there
    not yet: slots_of([5, 2], 4, 6) gave [...], expected [...]   the first case that differs
    correct: agrees with radixlib.pages.slots_of on 240 cases

"implement" exercises take a function and run it against the library's own code on many
generated cases; "compute" exercises take one value, which the check derives from the
library the way the chapter's text explains. Solutions live apart, in ``solutions/``.
"""
from __future__ import annotations

import copy
import math
import pkgutil
from collections.abc import Callable
from importlib import import_module
from typing import Any, NamedTuple

CHAPTERS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ch")))
ARG_WIDTH = 200                   # characters of an argument shown in a message
DUMP_WIDTH = 400                  # ... or of a text dump (a cache's tree)


class Exercise(NamedTuple):
    """One exercise: what the reader's answer is compared with, and on what."""
    name: str
    kind: str                                # "implement" (a function) or "compute" (a value)
    reference: Callable[..., Any]            # the library's answer for one case's arguments
    cases: Callable[[], list[tuple]]         # seeded argument tuples (one empty tuple for "compute")
    hint: str
    source: str                              # what the reference is, for the verdict


class Verdict(NamedTuple):
    """What ``check`` found; it displays as its message."""
    status: str                              # "unanswered", "wrong" or "correct"
    message: str

    def __repr__(self) -> str:
        return self.message

    @property
    def correct(self) -> bool:
        return self.status == "correct"


def exercise(name: str) -> Exercise:
    """The exercise called ``name`` (any chapter)."""
    for chapter in CHAPTERS:
        for candidate in import_module(f"{__name__}.{chapter}").EXERCISES:
            if candidate.name == name:
                return candidate
    raise ValueError(f"no exercise called {name!r}")


def check(name: str, answer: Any) -> Verdict:
    """Compare the reader's ``answer`` with the library on every case of exercise ``name``."""
    ex = exercise(name)
    if answer is None or answer is Ellipsis:
        return _unanswered(ex)
    cases = ex.cases()
    for args in cases:
        expected = ex.reference(*copy.deepcopy(args))
        call = f"{name}({', '.join(map(_short, args))})" if ex.kind == "implement" else name
        try:
            got = answer(*copy.deepcopy(args)) if ex.kind == "implement" else answer
        except NotImplementedError:
            return _unanswered(ex)
        except Exception as error:                       # the reader's code failed: say where
            return Verdict("wrong", f"not yet: {call} raised {type(error).__name__}: {error}")
        if got is None or got is Ellipsis:
            return _unanswered(ex)
        if not same(got, expected):
            return Verdict("wrong", f"not yet: {call} gave {_short(got)}, expected {_short(expected)}")
    count = f" on {len(cases)} cases" if ex.kind == "implement" else ""
    return Verdict("correct", f"correct: agrees with {ex.source}{count}")


def same(got: Any, expected: Any) -> bool:
    """Equal, with floats compared to 1e-9 (relative), sequences element by element, and arrays
    (tensors) by dtype, shape and every element."""
    if hasattr(expected, "dtype") and hasattr(expected, "shape"):
        return (getattr(got, "dtype", None) == expected.dtype and getattr(got, "shape", None) == expected.shape
                and bool((got == expected).all()))
    if isinstance(expected, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(map(same, got, expected))
    try:
        return bool(got == expected)
    except (TypeError, ValueError, RuntimeError):       # e.g. tensors of other shapes
        return False


def _unanswered(ex: Exercise) -> Verdict:
    return Verdict("unanswered", f"not answered yet (hint: {ex.hint})")


def _short(value: Any) -> str:
    """A one-line rendering; an object without its own repr (a cache) shows its text dump."""
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # an array or tensor: its values, its dtype
        return _short(value.tolist()) + f" ({value.dtype})"
    plain = type(value).__repr__ is object.__repr__ and type(value).__str__ is not object.__str__
    if not plain and "\n" in repr(value):                   # a model: its repr is a page of layers
        return f"<{type(value).__name__}>"
    text = " | ".join(line.strip() for line in (str(value) if plain else repr(value)).splitlines())
    width = DUMP_WIDTH if plain else ARG_WIDTH
    return text if len(text) <= width else text[: width - 1] + "…"
