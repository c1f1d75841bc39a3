"""The book's Sphinx extension (``_config.yml`` loads it): what the chapters cannot say themselves.

- ``chapter-table``, a directive: every chapter (by its own title) with its one-line summary,
  read from the README's chapter table at build time, so a new chapter needs only its README
  row (the table of contents finds its notebook by name, ``_toc.yml``).
- The cache lab: a widget needs a kernel, and its output in a chapter is a widget view with no
  stored state, blank on a static page. The book puts a note there instead, saying that the
  reader steps it in JupyterLab and that the cells after it drive the same lab from code.
- ``# NBVAL_...`` comments (instructions to the notebook test) are left out of the code shown.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

WIDGET_VIEW = '<script type="application/vnd.jupyter.widget-view+json">'
NBVAL_COMMENT = re.compile(r"^# NBVAL_\w+.*\n?", re.MULTILINE)
CHAPTER_DOC = re.compile(r"^\d\d[a-z]?_")
# A row of the README's chapter table: | [NN Title](notebooks/NN_name.ipynb) | summary |
ROW = re.compile(r"^\|\s*\[[^\]]+\]\(notebooks/(?P<doc>\d\d[a-z]?_[^)/]+)\.ipynb\)\s*"
                 r"\|\s*(?P<summary>.+?)\s*\|\s*$")

logger = logging.getLogger(__name__)


class Chapter(NamedTuple):
    """One README row: the chapter's document name (``02_the_radix_tree``) and its summary."""
    doc: str
    summary: str


def chapters(readme: str) -> list[Chapter]:
    """The chapter rows of the README's table, in order."""
    return [Chapter(m["doc"], m["summary"]) for m in map(ROW.match, readme.splitlines()) if m]


def table_markdown(rows: list[Chapter]) -> list[str]:
    """The rows as a MyST table whose first column links to each chapter's page, titled as the page is."""
    return ["| chapter | you will learn |", "|---|---|", *(f"| {{doc}}`{c.doc}` | {c.summary} |" for c in rows)]


class ChapterTable(SphinxDirective):
    """``{chapter-table}``: the README's chapter table; a warning names a chapter with no row."""

    def run(self) -> list[nodes.Node]:
        readme = Path(self.env.srcdir).parent / "README.md"
        self.env.note_dependency(str(readme))
        rows = chapters(readme.read_text(encoding="utf-8"))
        for doc in sorted(d for d in self.env.found_docs - {c.doc for c in rows} if CHAPTER_DOC.match(d)):
            logger.warning(f"chapter {doc} has no row in the README's chapter table", location=self.get_location())
        container = nodes.container(classes=["chapter-table"])
        self.state.nested_parse(StringList(table_markdown(rows), str(readme)), self.content_offset, container)
        return [container]


def widget_note() -> nodes.admonition:
    """The note that stands where JupyterLab draws the cache lab."""
    text = nodes.paragraph("", "", nodes.Text("Here JupyterLab shows the cache lab, a widget you step yourself: "
                                              "open the chapter there ("), nodes.literal(text="make lab"),
                           nodes.Text(") and press its buttons. A static page has no kernel to run it; the "
                                      "cells below drive the same lab from code, just as the buttons do."))
    return nodes.admonition("", nodes.title(text="The cache lab runs in JupyterLab"), text,
                            classes=["note", "widget-note"])


def adapt_chapter(app: Sphinx, doctree: nodes.document) -> None:
    """Put the note where a widget view would be blank; drop the notebook test's comments from code."""
    for raw in list(doctree.findall(nodes.raw)):
        if raw.astext().startswith(WIDGET_VIEW):
            raw.replace_self(widget_note())
    for block in doctree.findall(nodes.literal_block):
        if NBVAL_COMMENT.search(block.rawsource):     # (rawsource == text, or Sphinx won't highlight it)
            block.rawsource = NBVAL_COMMENT.sub("", block.rawsource)
            block.children = [nodes.Text(block.rawsource)]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("chapter-table", ChapterTable)
    app.connect("doctree-read", adapt_chapter)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
