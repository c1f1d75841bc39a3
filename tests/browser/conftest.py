"""Fixtures for the real-browser tests: a throwaway JupyterLab server, the static book built and
served on 127.0.0.1, and a headless Chromium page.

Everything lives in pytest's temporary folder: fresh Jupyter config, data, runtime, IPython,
settings and workspace dirs, a random token and a free local port; the book is built from the
committed chapters into its own folder. Nothing in the repository or the home directory is
read or written. Without Playwright, Debian's ``chromium`` or (for the book) Jupyter Book the
tests skip with a one-line reason, unless ``REQUIRE_BROWSER=1`` (CI), where they fail instead.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Page

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
BOOK_BUILD_S = 240           # Jupyter Book renders the eight chapters in ~15 s here
SERVER_START_S = 60          # JupyterLab answers /api/status well within this on 2 cores
SERVER_STOP_S = 10           # then SIGKILL
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Lab settings for a quiet, deterministic page: every cell stays in the DOM (no windowing),
# and no news or update toasts cover the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``browser`` marker the tests here carry."""
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (skip: -m 'not browser')")


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: its base URL, token and the folder it serves."""
    url: str
    token: str
    root: Path

    def lab_url(self, notebook: str) -> str:
        """The URL that opens ``notebook`` (a path under ``root``) in the Lab UI."""
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Playwright and chromium are present."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (make chromium, or apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of Debian's chromium; skips (or fails under REQUIRE_BROWSER=1) when anything is missing."""
    skip_or_fail(browser_missing(), "REQUIRE_BROWSER")
    return shutil.which("chromium")


@pytest.fixture
def lab_server(tmp_path: Path, chromium_path: str) -> Iterator[LabServer]:
    """A JupyterLab serving ``tmp_path/root`` (empty; the test copies notebooks in), stopped afterwards."""
    root = tmp_path / "root"
    root.mkdir()
    server = LabServer(f"http://127.0.0.1:{free_port()}", secrets.token_hex(16), root)
    log = (tmp_path / "jupyterlab.log").open("wb")
    process = subprocess.Popen(lab_command(server, tmp_path), env=isolated_env(tmp_path),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(server, process, tmp_path / "jupyterlab.log")
        yield server
    finally:
        stop(process)
        log.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_command(server: LabServer, tmp_path: Path) -> list[str]:
    """``python -m jupyterlab`` on this venv's Python, with settings and workspaces under ``tmp_path``."""
    settings = tmp_path / "lab-settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = server.url.rsplit(":", 1)[1]
    return [sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={server.token}", f"--ServerApp.root_dir={server.root}",
            "--ServerApp.allow_root=True", "--ServerApp.terminals_enabled=False",
            "--KernelSpecManager.ensure_native_kernel=True",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly"]


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The environment with every Jupyter/IPython directory moved into ``tmp_path``.

    ``JUPYTER_NO_CONFIG`` makes Jupyter read only the (empty) config dir given here; the venv's
    ``bin`` goes first on ``PATH`` so the ``python3`` kernel is this venv's Python.
    """
    dirs = {name: tmp_path / name.lower() for name in
            ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")}
    for path in dirs.values():
        path.mkdir()
    return {**os.environ, **{k: str(v) for k, v in dirs.items()}, "JUPYTER_NO_CONFIG": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def wait_until_up(server: LabServer, process: subprocess.Popen, log: Path) -> None:
    """Poll ``/api/status`` until it answers; fail with the server's log if it exits or is slow."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/api/status?token={server.token}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Terminate the server (it shuts its kernels down), kill it if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=SERVER_STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_S)


@dataclass(frozen=True)
class BookSite:
    """The built book served over HTTP: its base URL, its HTML folder, where screenshots go."""
    url: str
    html: Path
    screenshots: Path

    def page_url(self, name: str) -> str:
        """The URL of page ``name`` (``index``, ``02_the_radix_tree``, ``references``)."""
        return f"{self.url}/{name}.html"


def book_missing() -> str | None:
    """Why the book cannot be built here, or None when Jupyter Book is installed."""
    if importlib.util.find_spec("jupyter_book") is None:
        return "Jupyter Book is not installed (pip install -e '.[book]')"
    return None


@pytest.fixture(scope="session")
def book_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built from the committed chapters, as ``make book`` builds it, into a temporary folder.

    Warnings are errors: a broken cross-reference or a chapter without a README row fails the build.
    """
    skip_or_fail(book_missing(), "REQUIRE_BROWSER")
    out = tmp_path_factory.mktemp("book")
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(NOTEBOOKS),
               "--path-output", str(out), "--warningiserror", "--keep-going"]
    build = subprocess.run(command, capture_output=True, text=True, timeout=BOOK_BUILD_S)
    assert build.returncode == 0, f"the book build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def book_site(book_html: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookSite]:
    """``book_html`` served by a plain HTTP server on 127.0.0.1 (a free port), stopped afterwards."""
    handler = functools.partial(QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield BookSite(f"http://127.0.0.1:{server.server_address[1]}", book_html,
                       tmp_path_factory.mktemp("book-screenshots"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=SERVER_STOP_S)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page(chromium_path: str) -> Iterator[Page]:
    """A fresh page in headless Chromium (Playwright's own temporary profile), closed afterwards."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()
