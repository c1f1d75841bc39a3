"""Every exercise: its solution passes, a wrong answer fails naming the first differing case,
and the chapter holds only a stub whose committed check output says "not answered yet"."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from radixlib.exercises import CHAPTERS, ch01, check, exercise

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {path.name.split("_")[0]: path for path in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")}
SOLUTIONS = {path.name.split("_")[0]: path for path in (ROOT / "solutions").glob("*.py")}
CHECK = re.compile(r"""check\(\s*["'](\w+)["']""")


def chapter_exercises() -> list[tuple[str, str]]:
    """(chapter number, exercise name) for every exercise of every chapter module."""
    out = []
    for chapter in CHAPTERS:
        module = importlib.import_module(f"radixlib.exercises.{chapter}")
        out += [(chapter[2:], ex.name) for ex in module.EXERCISES]
    return out


def solution(number: str, name: str):
    spec = importlib.util.spec_from_file_location(f"solutions_{number}", SOLUTIONS[number])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def wrong_answer(number: str, name: str):
    """The chapter's plausible wrong answer (tests/wrong_answers/chNN.py): it must be caught."""
    return importlib.import_module(f"wrong_answers.ch{number}").WRONG[name]


@pytest.mark.parametrize("number, name", chapter_exercises())
def test_the_solution_passes(number, name):
    verdict = check(name, solution(number, name))
    assert verdict.correct, verdict.message


@pytest.mark.parametrize("number, name", chapter_exercises())
def test_a_wrong_answer_fails_naming_the_first_differing_case(number, name):
    verdict = check(name, wrong_answer(number, name))
    assert verdict.status == "wrong" and verdict.message.startswith("not yet: ")
    if exercise(name).kind == "implement":
        assert f"{name}(" in verdict.message and ", expected " in verdict.message


def test_a_stub_is_not_answered_yet():
    def stub(*args):
        ...

    def raising(*args):
        raise NotImplementedError

    for answer in (stub, raising, ...):
        assert check("slots_of", answer).status == "unanswered"
    assert check("slots_of", stub).message == f"not answered yet (hint: {ch01.EXERCISES[0].hint})"


def test_reader_code_that_raises_is_reported_not_raised():
    verdict = check("slots_of", lambda pages, page_size, n: pages[99])
    assert verdict.status == "wrong" and "raised IndexError" in verdict.message


@pytest.mark.parametrize("number", sorted({n for n, _ in chapter_exercises()}))
def test_the_chapter_holds_stubs_and_its_checks_say_not_answered_yet(number):
    """Each exercise is checked in its chapter, after a stub cell; the book ships unanswered."""
    cells = [c for c in json.loads(NOTEBOOKS[number].read_text())["cells"] if c["cell_type"] == "code"]
    names = {name for n, name in chapter_exercises() if n == number}
    checked = {}
    for before, cell in zip(cells, cells[1:]):
        for name in CHECK.findall("".join(cell["source"])):
            stub = "".join(before["source"])
            assert "# your code here" in stub and ("..." in stub or "NotImplementedError" in stub), name
            checked[name] = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                                    for o in cell["outputs"])
    assert set(checked) == names
    assert all(text.startswith("not answered yet") for text in checked.values()), checked


def test_every_teaching_chapter_has_two_exercises_one_of_them_implement():
    by_chapter = {}
    for number, name in chapter_exercises():
        by_chapter.setdefault(number, []).append(exercise(name).kind)
    for number in ["00", "01", "02", "03", "04", "05", "06a", "06b", "07", "11"]:
        kinds = by_chapter.get(number, [])
        assert len(kinds) >= 2 and "implement" in kinds, f"chapter {number}: {kinds}"
