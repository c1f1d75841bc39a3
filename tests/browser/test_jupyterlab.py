"""Chapter 02 in a real JupyterLab: run every cell, then click the cache lab like a reader would.

The browser's drawing is checked against a ``CacheLab`` driven from Python with the same steps,
so a click must do exactly what the library says that step does. The committed notebook is never
opened: the server serves a copy (outputs cleared) from the test's temporary folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from radixlib.lab import CacheLab, LabConfig

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

CHAPTER = Path(__file__).parents[2] / "notebooks" / "02_the_radix_tree.ipynb"
RUN_ALL_MS = 90_000           # chapter 02 runs in ~10 s here; kernel start included
STEP_MS = 15_000              # one click: a kernel round trip and two graphviz renders
CONFIG = LabConfig(num_pages=16, page_size=1, eviction="lru")
PROMPTS = ("the cat sat on the mat", "the cat ate the fish")     # share "the cat": a split
EVICT_TOKENS = 1              # evict whole leaves until >= 1 token is freed: the LRU leaf


def test_cache_lab_stepper_in_jupyterlab(lab_server: LabServer, page: Page, tmp_path: Path) -> None:
    """Reset, insert two prompts and evict in the browser; tree and log follow ``CacheLab``."""
    page.set_default_timeout(30_000)
    page.goto(lab_server.lab_url(copy_chapter(lab_server.root)))
    try:
        stepper = run_all_cells(page)
        expected = CacheLab(CONFIG)
        counts = [step(stepper, expected, "reset", CONFIG)]
        counts += [step(stepper, expected, "insert", prompt) for prompt in PROMPTS]
        counts.append(step(stepper, expected, "evict", EVICT_TOKENS))
        assert counts == [1, 2, 4, 3], counts        # root; +leaf; +split +leaf; -LRU leaf
        assert "evicted #" in expected.message
    finally:
        stepper_in_view(page)
        page.screenshot(path=tmp_path / "chapter02.png")


def copy_chapter(root: Path) -> str:
    """Write chapter 02 with its outputs cleared into ``root``; return its file name."""
    notebook = json.loads(CHAPTER.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    (root / CHAPTER.name).write_text(json.dumps(notebook))
    return CHAPTER.name


def run_all_cells(page: Page) -> Locator:
    """Run > Run All Cells, wait until every code cell has run, and return the rendered stepper.

    Waits until the status bar shows the notebook's kernel idle: run before that, Lab asks
    which kernel to start and drops the queued cells. Fails fast (with the notebook's error
    output) when a cell raises and the run stops early.
    """
    kernel = page.get_by_title(re.compile(r"^Change kernel for "))
    expect(kernel).to_have_text(re.compile(r"^Python 3\b.*\| Idle$"), timeout=RUN_ALL_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(RUN_FINISHED_JS, timeout=RUN_ALL_MS)
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), \
        f"Run All stopped early: {prompts}\n" + "\n".join(errors.all_inner_texts())
    stepper = page.locator(".cache-lab")
    expect(stepper).to_be_visible(timeout=STEP_MS)
    return stepper


# Done when the first code cell has an execution count and none is queued or running ("[*]").
RUN_FINISHED_JS = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
    return prompts.length > 0 && /\\d/.test(prompts[0]) && !prompts.some(p => p.includes('*'));
}"""


def step(stepper: Locator, lab: CacheLab, action: str, arg: object) -> int:
    """Set the controls for ``action``, click its button, apply it to ``lab`` too, compare both.

    Returns the number of tree nodes drawn (root included), once it matches ``lab``.
    """
    set_controls(stepper, action, arg)
    stepper.get_by_role("button", name=action, exact=True).click()
    lab.step(action, arg)
    expect(log_line(stepper)).to_contain_text(lab.message, timeout=STEP_MS)
    ids = [lab.cache.root.id, *(node.id for node in lab.cache.nodes())]
    expect(tree_nodes(stepper)).to_have_text([f"n{i}" for i in ids], timeout=STEP_MS)
    return len(ids)


def set_controls(stepper: Locator, action: str, arg: object) -> None:
    """Type ``arg`` into the control(s) the ``action`` button reads (by their visible labels)."""
    if action == "insert":
        stepper.get_by_label("prompt", exact=True).fill(arg)
    elif action == "evict":
        stepper.get_by_label("evict N", exact=True).fill(str(arg))
    elif action == "reset":
        stepper.get_by_label("pages", exact=True).fill(str(arg.num_pages))
        stepper.get_by_label("page size", exact=True).select_option(str(arg.page_size))
        stepper.get_by_label("eviction", exact=True).select_option(arg.eviction)
    else:
        raise ValueError(f"this test does not drive {action!r}")
    stepper.page.keyboard.press("Tab")            # number boxes send their value on blur


def log_line(stepper: Locator) -> Locator:
    """The stepper's log line (CSS class ``cache-lab-log``)."""
    return stepper.locator(".cache-lab-log")


def tree_nodes(stepper: Locator) -> Locator:
    """The titles of the tree's nodes in the stepper's tree drawing (CSS class ``cache-lab-tree``).

    ``draw_tree`` names node ``#k`` ``n<k>`` (graphviz writes it as the ``<title>`` of a
    ``g.node``); the colour key is a ``g.node`` titled ``legend`` and is left out.
    """
    return stepper.locator(".cache-lab-tree svg g.node > title").filter(has_text=re.compile(r"^n\d+$"))


def stepper_in_view(page: Page) -> None:
    """Scroll the stepper's top to the top of the window (if it ever rendered)."""
    stepper = page.locator(".cache-lab")
    if stepper.count():
        stepper.first.evaluate("box => box.scrollIntoView()")


def expect(locator: Locator):
    """Playwright's ``expect``, imported on use (without Playwright the fixtures skip first)."""
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(locator)
