"""sglang-router 0.3.2, the real one, beside ``cluster.CacheAwarePolicy``.

The ``[cluster]`` extra (``pip install sglang-router==0.3.2``) brings SGLang's Rust router.
Here it runs for real, on the loopback interface, in front of mock workers, and the same
request scripts run through our policy, so the worker chosen per request can be compared::

    Step            one scripted request: "send" (answered at once), "hold" (kept in flight
                    until the next "release"), or "release" (every held request completes)
    SCENARIOS       scripts that separate the rules: sequential system prompts, loads, token ids
    simulate        a script through cluster.CacheAwarePolicy (loads: what the script holds)
    MockWorker      a tiny HTTP server: answers the router's probes, answers /generate at
                    once or holds it (rid "hold-..."), records every request it gets
    RealRouter      ``python -m sglang_router.launch_router`` on 127.0.0.1 in its own process
                    group, under ``timeout`` so it stops by itself; ``run(script)``

Loads are controlled so both sides see the same state: the script's requests run one at a
time, a held request counts as load on both sides from the moment the router has counted
it, and a release waits until the router's loads are back to zero. Standard library only.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

from ..cluster import ROUTER_VERSION, CacheAwareConfig, CacheAwarePolicy, Decision, Loads, routing_text
from . import pinned_missing

HOST = "127.0.0.1"
HOLD_TIMEOUT = 30.0          # seconds a mock worker holds a request at most
POLL = 0.02                  # seconds between polls of the router's state


def router_unavailable() -> str | None:
    """Why the real router cannot run here; ``None`` when it can."""
    return pinned_missing("sglang-router", ROUTER_VERSION, "pip install 'radixlib[cluster]'", "the comparison")


# ------------------------------------------------------------------ scripts
class Step(NamedTuple):
    action: str                        # "send", "hold" or "release"
    prompt: str | tuple[int, ...] = ""  # text, or token ids (sent as input_ids)

    @property
    def text(self) -> str:
        """What the router matches: the text, or the ids joined by spaces."""
        return self.prompt if isinstance(self.prompt, str) else routing_text(self.prompt)

    def body(self, rid: str) -> dict:
        key = "text" if isinstance(self.prompt, str) else "input_ids"
        return {key: self.prompt if key == "text" else list(self.prompt), "rid": rid}


SYSTEM_PROMPTS = (
    "You are a patient math tutor. Explain every step, then check the answer.",
    "You are a terse SQL expert. Answer with one query and no prose at all.",
    "You are a friendly travel agent who plans trips for people on a budget.",
    "You are a careful medical librarian. Cite a source for every claim made.",
    "You are a Rust compiler that explains each borrow-checker error it sees.",
    "You are a poet who answers every question in four short rhyming lines.",
)
QUESTIONS = ("What is a radix tree?", "How do I sort a list?", "Where should I go in May?",
             "Why is the sky blue?", "What is 17 times 23?", "How do caches work?", "Can you help me?")


def chat(system: int, question: int) -> str:
    return f"{SYSTEM_PROMPTS[system]}\nUser: {QUESTIONS[question]}\nAssistant:"


def six_system_prompts() -> list[Step]:
    """A new user's check: six system prompts, six questions each, one request at a time."""
    return [Step("send", chat(s, q)) for q in range(6) for s in range(6)]


def loaded_workers() -> list[Step]:
    """Held requests make loads: least load with ties, affinity, the balance rule, and the
    worker a shared prefix is credited to (its node's creator, not the last worker sent it)."""
    return [Step("hold", chat(0, 0)), Step("hold", chat(1, 0)), Step("hold", chat(2, 0)),
            Step("send", chat(0, 1)), Step("hold", chat(0, 2)), Step("hold", chat(0, 3)),
            Step("hold", chat(0, 4)), Step("hold", chat(0, 5)), Step("send", chat(3, 0)),
            Step("send", chat(1, 1)), Step("release"),
            Step("send", chat(0, 5)), Step("send", chat(0, 6)), Step("send", chat(4, 0)), Step("send", chat(5, 0))]


def token_ids() -> list[Step]:
    """Token ids are matched as characters: ids that share no token can share digits."""
    return [Step("hold", (151643, 8, 9, 10)), Step("send", (151644, 8, 9, 10)), Step("send", (200001, 8, 9, 10)),
            Step("send", (151643, 8, 9, 11)), Step("release"), Step("send", (7, 151643, 8, 9))]


def near_the_threshold() -> list[Step]:
    """Characters matched over characters sent, against cache_threshold 0.3: 12/40 is not above it, 13/40 is."""
    base = "The quick brown fox jumps over the lazy dog"
    return [Step("hold", base), Step("send", base[:12] + "0123456789abcdefghijklmnopqr"),
            Step("send", base[:13] + "ABCDEFGHIJKLMNOPQRSTUVWXYZ!"), Step("release")]


class Scenario(NamedTuple):
    name: str
    steps: list[Step]
    config: CacheAwareConfig
    num_workers: int = 3


SCENARIOS = (
    Scenario("six system prompts", six_system_prompts(), CacheAwareConfig()),
    Scenario("loaded workers", loaded_workers(), CacheAwareConfig(balance_abs_threshold=2)),
    Scenario("token ids", token_ids(), CacheAwareConfig()),
    Scenario("near the threshold", near_the_threshold(), CacheAwareConfig()),
)


def simulate(steps: Sequence[Step], num_workers: int, config: CacheAwareConfig = CacheAwareConfig()) -> list[Decision]:
    """Our policy's decision for every "send"/"hold" of ``steps``; a held request is load until "release"."""
    policy, loads, out = CacheAwarePolicy(num_workers, config), [0] * num_workers, []
    for step in steps:
        if step.action == "release":
            loads = [0] * num_workers
            continue
        decision = policy.choose(step.text, Loads(list(loads), [0] * num_workers))
        out.append(decision)
        if step.action == "hold":
            loads[decision.worker] += 1
    return out


# ------------------------------------------------------------------ mock workers
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:       # quiet: the worker records what it gets
        pass

    def do_GET(self) -> None:
        self.server.worker.probes.append(self.path)
        # no model_path/tokenizer_path: the router then loads no tokenizer (nothing leaves the machine)
        self._answer({"dp_size": 1} if "info" in self.path else {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.worker.take(body)
        self._answer({"text": "", "meta_info": {"id": body.get("rid"), "finish_reason": {"type": "length"}}})

    def _answer(self, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class MockWorker:
    """An HTTP worker on 127.0.0.1 that records requests and holds those whose rid starts with "hold"."""

    def __init__(self):
        self.probes: list[str] = []              # GET paths the router asked for
        self.received: list[dict] = []           # /generate bodies, in arrival order
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((HOST, 0), _Handler)
        self._server.daemon_threads = True
        self._server.worker = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def take(self, body: dict) -> None:
        """Record ``body``; hold it until ``release`` (at most ``HOLD_TIMEOUT``) if its rid says so."""
        release = self._release
        self.received.append(body)
        if str(body.get("rid", "")).startswith("hold"):
            release.wait(HOLD_TIMEOUT)

    def has(self, rid: str) -> bool:
        return any(b.get("rid") == rid for b in self.received)

    def release(self) -> None:
        """Answer every held request."""
        self._release, release = threading.Event(), self._release
        release.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------ the real router
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _http(url: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


class RealRouter:
    """sglang-router on 127.0.0.1 in front of ``workers``, with the cache-aware ``config``.

    A context manager: entering starts it and waits until every worker is registered and
    healthy; leaving (even on an error) kills its whole process group. It runs under
    ``timeout``, so it stops by itself after ``lifetime`` seconds whatever happens here.
    """

    def __init__(self, workers: Sequence[MockWorker], config: CacheAwareConfig = CacheAwareConfig(),
                 lifetime: float = 120.0, startup: float = 30.0):
        self.workers, self.config, self.lifetime, self.startup = list(workers), config, lifetime, startup
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.order: list[str] = []               # worker URLs in the router's own order
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def command(self) -> list[str]:
        c = self.config
        return ["timeout", "-k", "5", str(int(self.lifetime)), sys.executable, "-m", "sglang_router.launch_router",
                "--host", HOST, "--port", str(self.port), "--prometheus-host", HOST,
                "--prometheus-port", str(free_port()), "--policy", "cache_aware",
                "--cache-threshold", str(c.cache_threshold), "--balance-abs-threshold", str(c.balance_abs_threshold),
                "--balance-rel-threshold", str(c.balance_rel_threshold),
                "--eviction-interval-secs", str(int(c.eviction_interval_secs)), "--max-tree-size", str(c.max_tree_size),
                "--log-level", "warn", "--worker-urls", *[w.url for w in self.workers]]

    def __enter__(self) -> RealRouter:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            wait_for(self._ready, self.startup, "the router to register every worker")
        except BaseException:
            self.__exit__()
            raise
        self.order = [w["url"] for w in self.worker_info()]
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            _kill_group(self.process)
        for worker in self.workers:
            worker.release()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def worker_info(self) -> list[dict]:
        """GET /workers: the router's workers, in the order its policies see them, with their loads."""
        return _http(f"{self.url}/workers")["workers"]

    def loads(self) -> list[int]:
        """The router's in-flight count per worker, in ``self.order``."""
        by_url = {w["url"]: w["load"] for w in self.worker_info()}
        return [by_url[url] for url in self.order]

    def run(self, steps: Sequence[Step]) -> list[int]:
        """Play ``steps`` one at a time; the worker (index in ``self.order``) each request reached."""
        chosen, held, threads = [], 0, []
        for i, step in enumerate(steps):
            if step.action == "release":
                self._release(threads)
                held, threads = 0, []
                continue
            rid = f"{step.action}-{i}"
            if step.action == "hold":
                threads.append(self._send_held(step.body(rid)))
                held += 1
                wait_for(lambda n=held: sum(self.loads()) == n, 10, f"the router to count held request {rid}")
            else:
                _http(f"{self.url}/generate", step.body(rid))
            chosen.append(self._receiver(rid))
        self._release(threads)
        return chosen

    # ------------------------------------------------------------ internals
    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the router exited with {self.process.returncode}:\n{self.log()[-2000:]}")
        try:
            info = self.worker_info()
        except OSError:
            return False
        return len(info) == len(self.workers) and all(w["is_healthy"] for w in info)

    def _send_held(self, body: dict) -> threading.Thread:
        thread = threading.Thread(target=_http, args=(f"{self.url}/generate", body, HOLD_TIMEOUT + 10), daemon=True)
        thread.start()
        return thread

    def _receiver(self, rid: str) -> int:
        wait_for(lambda: any(w.has(rid) for w in self.workers), 10, f"a worker to receive {rid}")
        url = next(w.url for w in self.workers if w.has(rid))
        return self.order.index(url)

    def _release(self, threads: list[threading.Thread]) -> None:
        for worker in self.workers:
            worker.release()
        for thread in threads:
            thread.join(HOLD_TIMEOUT)
        wait_for(lambda: sum(self.loads()) == 0, 10, "the router's loads to return to zero")


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after 5 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    except ProcessLookupError:
        pass


class Comparison(NamedTuple):
    """One scenario through the real router and through ours."""
    name: str
    texts: list[str]            # each routed request's routing text
    real: list[int]             # worker chosen by sglang-router (index in its worker order)
    ours: list[Decision]

    @property
    def agree(self) -> bool:
        return self.real == [d.worker for d in self.ours]


def compare(scenario: Scenario) -> Comparison:
    """Run ``scenario`` through a freshly started real router and through ``simulate``."""
    workers = [MockWorker() for _ in range(scenario.num_workers)]
    try:
        with RealRouter(workers, scenario.config) as router:
            real = router.run(scenario.steps)
    finally:
        for worker in workers:
            worker.close()
    routed = [s for s in scenario.steps if s.action != "release"]
    return Comparison(scenario.name, [s.text for s in routed], real,
                      simulate(scenario.steps, scenario.num_workers, scenario.config))


def record_decisions(comparisons: Sequence[Comparison], path: Path) -> None:
    """Write the real router's choices (for the chapter, which replays ours beside them)."""
    data = {"router": f"sglang-router=={ROUTER_VERSION}",
            "scenarios": {c.name: {"texts": c.texts, "real": c.real} for c in comparisons}}
    path.write_text(json.dumps(data, indent=1) + "\n")
