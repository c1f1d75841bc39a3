"""Chapter 06a · Continuous batching: the admission check and the retraction order."""
from __future__ import annotations

import copy
import random

from ..cost_model import CostModel
from ..engine import Engine
from ..request import Request, SamplingParams
from ..scheduler import Scheduler, retraction_order
from . import Exercise


def _admits(scheduler: Scheduler, req: Request) -> bool:
    """Would ``req``, alone at the head of the queue, be admitted by the next round?"""
    scheduler.waiting, scheduler.batch_is_full = [req], False
    batch = scheduler.next_batch()
    return batch is not None and batch.kind == "prefill" and any(item.req is req for item in batch.items)


def _admits_cases() -> list[tuple]:
    """Model-free engines stopped mid-run (cached prefixes, running requests, a decayed
    ratio), each asked about one new request that may share a cached prefix."""
    rng = random.Random(6)
    cases = []
    for _ in range(40):
        page_size = rng.choice([1, 4])
        engine = Engine(executor=CostModel(), num_pages=rng.randint(24, 90) // page_size * 4, page_size=page_size)
        shared = [rng.randrange(50) for _ in range(rng.randint(4, 24))]
        for rid in range(rng.randint(1, 4)):
            prompt = shared[: rng.randint(1, len(shared))] + [rng.randrange(50) for _ in range(rng.randint(1, 8))]
            engine.scheduler.add(Request(rid, prompt, SamplingParams(max_new_tokens=rng.randint(1, 12))))
        for _ in range(rng.randint(1, 6)):
            engine.step()
        engine.scheduler._merge_prefilled()       # the state the next round starts from
        for k in range(3):
            prompt = shared[: rng.randint(0, len(shared))] + [rng.randrange(50) for _ in range(rng.randint(1, 30))]
            params = SamplingParams(max_new_tokens=rng.randint(1, 40))
            cases.append((engine.scheduler, Request(100 + k, prompt, params)))
    return cases


def _boundary_cases() -> list[tuple]:
    """New requests whose cost lands just inside, inside the locked-prefix window, or just
    outside the room: where each term of the check decides."""
    rng = random.Random(8)
    cases = []
    for _ in range(30):
        page_size = rng.choice([1, 4])
        engine = Engine(executor=CostModel(), num_pages=96 // page_size, page_size=page_size)
        shared = [rng.randrange(50) for _ in range(rng.randint(8, 40))]
        engine.generate([shared + [1]], SamplingParams(max_new_tokens=2))          # cached, unlocked
        engine.scheduler.add(Request(1, [7] * rng.randint(2, 10), SamplingParams(max_new_tokens=20)))
        engine.step()                                                               # one running request
        engine.scheduler._merge_prefilled()
        probe = Request(100, shared + [rng.randrange(50) for _ in range(rng.randint(1, 6))])
        s = copy.deepcopy(engine.scheduler)
        found = s.router.lookup(probe)
        room = s._room(s._budget())                               # the scheduler's own sum of reservations
        pinned = s.router.unlocked_tokens(found.node)
        fixed = len(probe.tokens) - found.prefix_len + page_size
        for target in (room - pinned - 1, room - pinned, room - 1, room):
            max_new = int(target) - fixed
            if max_new >= 1:
                cases.append((engine.scheduler, Request(100, probe.prompt, SamplingParams(max_new_tokens=max_new))))
    return cases


def _retraction_order(running: list[Request]) -> list[int]:
    return [r.rid for r in retraction_order(running)]


def _retraction_cases() -> list[tuple]:
    rng = random.Random(7)
    cases = []
    for _ in range(200):
        running = []
        for rid in range(rng.randint(1, 7)):
            req = Request(rid, [1] * rng.randint(1, 4), SamplingParams(max_new_tokens=16))
            req.output = [2] * rng.randint(0, 3)            # small ranges: many ties
            running.append(req)
        cases.append((running,))
    return cases


EXERCISES = [
    Exercise("admits", "implement", _admits, lambda: _admits_cases() + _boundary_cases(),
             hint="extend = tokens not matched by scheduler.router.lookup(req); it costs extend + min(max_new_tokens, "
                  "4096) + a page, and must be strictly fewer than free_tokens minus every running request's "
                  "min(remaining, 4096) * new_token_ratio, minus the unlocked tokens its prefix would lock",
             source="Scheduler.next_batch (SGLang: PrefillAdder.add_one_req)"),
    Exercise("retraction_order", "implement", _retraction_order, _retraction_cases,
             hint="fewest output tokens first, then the longest prompt; among equals, the later in the batch first",
             source="scheduler.retraction_order (SGLang: ScheduleBatch.retract_decode)"),
]
