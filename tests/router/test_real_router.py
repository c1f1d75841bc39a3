"""sglang-router 0.3.2, for real, beside radixlib.cluster's cache-aware policy.

Every scenario starts the real router on 127.0.0.1 (``--policy cache_aware``) in front of
three mock workers, plays its requests one at a time (held requests make the loads), and
compares the worker the router chose for each request with ours. It needs the ``[cluster]``
extra: without it these tests skip, and with ``REQUIRE_ROUTER=1`` (``.ci/run``) they fail.
Each router runs under ``timeout`` in its own process group, killed on the way out.
"""
from __future__ import annotations

import os

import pytest
from helpers import skip_or_fail

from radixlib.reference.gateway import (
    SCENARIOS,
    MockWorker,
    RealRouter,
    compare,
    router_unavailable,
    six_system_prompts,
)


@pytest.fixture(scope="module", autouse=True)
def real_router_available() -> None:
    skip_or_fail(router_unavailable(), "REQUIRE_ROUTER")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.replace(" ", "-"))
def test_the_real_router_chooses_the_workers_ours_chooses(scenario):
    comparison = compare(scenario)
    ours = [d.worker for d in comparison.ours]
    assert comparison.real == ours, list(zip(comparison.texts, comparison.real, ours))


def test_a_new_users_check_lands_every_request_on_the_first_worker_and_leaves_nothing_behind():
    """Six system prompts, sequential: loads are 0 at every choice, so a prompt the tree has not
    seen goes to the least-loaded worker, the first of three equals in the router's order, and
    every later prompt follows its prefix there. The mock info carries no model path, so the
    router loads no tokenizer; it only probes health and info."""
    workers = [MockWorker() for _ in range(3)]
    try:
        with RealRouter(workers) as router:
            chosen = router.run(six_system_prompts())
            pgid = router.process.pid
            assert router.loads() == [0, 0, 0]
        assert chosen == [0] * 36
        assert len(next(w for w in workers if w.url == router.order[0]).received) == 36
        assert all(set(w.probes) <= {"/health", "/server_info", "/model_info"} for w in workers)
        assert "huggingface" not in router.log().lower()
    finally:
        for worker in workers:
            worker.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)                       # the router's process group is gone
