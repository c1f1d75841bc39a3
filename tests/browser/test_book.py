"""The static book (``make book``) in a real browser: every page of a fresh build, offline.

The book is built from the committed chapters into a temporary folder and served on
127.0.0.1. For the front page, every chapter and the references, Chromium checks that every
image loads, that every link inside the book reaches a page (and the anchor on it), that
every figure a chapter's outputs hold is on its page, and that no request leaves the machine:
anything addressed to another host is aborted and fails the test. A screenshot of each page
is saved in the session's temporary folder (``book-screenshots*``).
"""
from __future__ import annotations

import functools
import json
import re
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

if TYPE_CHECKING:
    from conftest import BookSite
    from playwright.sync_api import Page, Route

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parents[2]
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
PAGES = ["index", *CHAPTERS, "references"]
IMAGES = {"image/png", "image/jpeg", "image/svg+xml", "image/gif"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# The element id an anchor points at, in a page's HTML.
ID = 'id="{}"'


@pytest.mark.parametrize("name", PAGES)
def test_book_page_loads_everything_locally(book_site: BookSite, page: Page, name: str) -> None:
    """Open one page: images load, internal links and anchors resolve, nothing comes from outside."""
    outside, failed = watch_requests(page, book_site.url)
    page.goto(book_site.page_url(name), wait_until="networkidle")
    try:
        images = loaded_images(page)
        assert all(width > 0 for _, width in images), f"images that did not load: {images}"
        broken = [link for link in internal_links(page, book_site.url) if not resolves(link)]
        assert not broken, f"links on {name} that do not resolve: {broken}"
        assert not failed, f"local requests that failed: {failed}"
        assert not outside, f"requests to other hosts (aborted): {outside}"
    finally:
        page.screenshot(path=book_site.screenshots / f"{name}.png")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_shows_every_figure_and_a_note_for_each_widget(book_site: BookSite, page: Page,
                                                                chapter: str) -> None:
    """Each drawing/plot output of the notebook is an image on the page; each widget view is a note;
    the notebook test's ``# NBVAL_...`` comments are not in the code shown."""
    figures, widgets = rendered_outputs(ROOT / "notebooks" / f"{chapter}.ipynb")
    page.goto(book_site.page_url(chapter), wait_until="networkidle")
    assert page.locator(".cell_output img:not(.text_html img)").count() == figures
    notes = page.locator(".widget-note")
    assert notes.count() == widgets
    if widgets:
        assert "JupyterLab" in notes.first.inner_text()
    assert not [code for code in page.locator(".cell_input").all_inner_texts() if "NBVAL_" in code]


def test_front_page_lists_every_chapter_with_its_readme_summary(book_site: BookSite, page: Page) -> None:
    """The front page's table: one row per chapter notebook, in order, linked, with the README's line."""
    page.goto(book_site.page_url("index"), wait_until="networkidle")
    rows = page.locator(".chapter-table tbody tr")
    links = [row.locator("a").first.get_attribute("href") for row in rows.all()]
    assert links == [f"{chapter}.html" for chapter in CHAPTERS]
    readme = (ROOT / "README.md").read_text()
    for row in rows.all():
        summary = row.locator("td").nth(1).inner_text()
        assert plain(summary) in plain(readme), summary
    nav = page.locator("nav.bd-docs-nav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert nav == [f"{name}.html" for name in PAGES[1:]]


def test_no_built_file_loads_anything_from_another_host(book_html: Path) -> None:
    """No script, style, image or frame in any built page or stylesheet names another host."""
    loads = re.compile(r"<(?:script|img|iframe|source)\b[^>]*\bsrc=\"([^\"]+)\"|<link\b[^>]*\bhref=\"([^\"]+)\"")
    css_urls = re.compile(r"url\(\s*['\"]?([^'\")]+)|@import\s+['\"]([^'\"]+)")
    found = [(path.name, url) for path in book_html.rglob("*.html")
             for url in map(first, loads.findall(path.read_text(errors="replace"))) if is_remote(url)]
    found += [(path.name, url) for path in book_html.rglob("*.css")
              for url in map(first, css_urls.findall(path.read_text(errors="replace"))) if is_remote(url)]
    assert len(list(book_html.glob("*.html"))) >= len(PAGES)
    assert not found, found


# --- helpers -----------------------------------------------------------------------------

def watch_requests(page: Page, base_url: str) -> tuple[list[str], list[str]]:
    """Abort and record every request to another host; record local responses that failed."""
    outside: list[str] = []
    failed: list[str] = []

    def route(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return outside, failed


LOAD_IMAGES_JS = """async () => {
    const images = [...document.images];
    images.forEach(image => { image.loading = 'eager'; });
    await Promise.all(images.map(image => image.decode().catch(() => null)));
    return images.map(image => [image.currentSrc || image.src, image.naturalWidth]);
}"""


def loaded_images(page: Page) -> list[tuple[str, int]]:
    """Every ``<img>`` on the page (lazy ones made to load) with its natural width (0: did not load)."""
    return [tuple(pair) for pair in page.evaluate(LOAD_IMAGES_JS)]


def internal_links(page: Page, base_url: str) -> set[str]:
    """The absolute URLs of every link on the page that stays inside the book."""
    hrefs = page.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    return {href for href in hrefs if href.startswith(base_url + "/")}


def resolves(link: str) -> bool:
    """The link's page answers 200 and, for ``page#anchor``, holds an element with that id."""
    url, anchor = urldefrag(link)
    status, html = fetch(url)
    return status == 200 and (not anchor or ID.format(unquote(anchor)) in html)


@functools.cache
def fetch(url: str) -> tuple[int, str]:
    """Status and text of a URL on the local server (each fetched once per session)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except OSError as error:
        return getattr(error, "code", 0), ""


def rendered_outputs(notebook: Path) -> tuple[int, int]:
    """How many outputs the book draws as an image, and how many are widget views.

    An output with HTML shows as HTML (it comes before images in the book's choice of format).
    """
    outputs = [o.get("data", {}) for cell in json.loads(notebook.read_text())["cells"] for o in cell.get("outputs", [])]
    figures = sum(1 for data in outputs if IMAGES & data.keys() and not {"text/html", WIDGET_VIEW} & data.keys())
    return figures, sum(1 for data in outputs if WIDGET_VIEW in data)


def plain(text: str) -> str:
    """Text as read: no markdown backticks, straight quotes (Sphinx curls them), single spaces."""
    return " ".join(text.replace("`", "").replace("\u2019", "'").split())


def first(groups: tuple[str, ...]) -> str:
    """The alternative of a regex match that matched."""
    return next(g for g in groups if g)


def is_remote(url: str) -> bool:
    """Whether loading ``url`` would go to another host (a scheme with a host, or ``//host``)."""
    return url.startswith("//") or bool(re.match(r"^[a-z][a-z0-9+.-]*://", url, re.I))
