"""CacheLab (the state machine) and the ipywidgets view driven through its click handlers."""
from __future__ import annotations

import pytest

from radixlib.lab import CacheLab, LabConfig
from radixlib.viz import MATCHED, draw_lab
from radixlib.widgets import CacheLabView

CAT, DOG = "the cat sat on the mat", "the dog ran"


def lab_with(*steps, config=LabConfig(num_pages=16, page_size=1)) -> CacheLab:
    lab = CacheLab(config)
    for action, arg in steps:
        lab.step(action, arg)
    return lab


def test_insert_and_match_report_what_happened():
    lab = lab_with(("insert", CAT))
    assert lab.message == "inserted 6 tokens: 0 matched, 6 computed; new leaf #1"
    assert lab.step("insert", DOG) == ("inserted 3 tokens: 1 matched, 2 computed; "
                                       "split #1: its first 1 token became new node #2; new leaf #3")
    assert lab.step("match", "the cat sat down").startswith("matched 3 of 4 tokens at node #4")
    assert "split #1: its first 2 tokens became new node #4" in lab.message
    lab.cache.check_invariants(held=[])


def test_lock_defaults_to_last_match_and_unlock_to_last_lock():
    lab = lab_with(("insert", CAT), ("match", "the cat"), ("lock", None))
    assert lab.frame.locks == (2,) and lab.cache.protected_size == 2
    lab.step("unlock", None)
    assert lab.frame.locks == () and lab.cache.protected_size == 0


def test_insert_evicts_the_shortfall_but_never_a_locked_path():
    lab = lab_with(("insert", CAT), ("match", CAT), ("lock", None),
                   config=LabConfig(num_pages=8, page_size=1))
    with pytest.raises(RuntimeError):                 # OutOfPages: 6 locked + 2 free < 3 tokens
        lab.step("insert", "a b c")
    lab.step("unlock", None)
    assert "evicted #1" in lab.step("insert", "a b c")


def test_failed_step_changes_nothing():
    lab = lab_with(("insert", CAT))
    before = (len(lab.history), lab.position, str(lab.cache))
    for action, arg in [("unlock", None), ("lock", 99), ("insert", ""), ("evict", -1), ("fly", None)]:
        with pytest.raises(ValueError):
            lab.step(action, arg)
    assert (len(lab.history), lab.position, str(lab.cache)) == before


def test_history_undo_redo_and_branching():
    lab = lab_with(("insert", CAT), ("insert", DOG), ("evict", 3))
    texts = [str(f.cache) for f in lab.history]
    lab.undo()
    assert str(lab.cache) == texts[2]
    lab.goto(0)
    assert lab.cache.total_size == 0 and lab.redo().action == "insert"
    lab.step("match", "the")                          # branching drops the undone future
    assert [f.action for f in lab.history] == ["start", "insert", "match"]
    assert [str(f.cache) for f in lab.history[:2]] == texts[:2]     # frames are never mutated


def test_highlight_is_dropped_when_the_matched_node_is_evicted():
    lab = lab_with(("insert", CAT), ("match", CAT), ("insert", "a b c d e f g h i j k"),
                   config=LabConfig(num_pages=12, page_size=1))
    assert "evicted #1" in lab.message and lab.frame.matched is None
    assert MATCHED not in draw_lab(lab).source


def test_reset_with_a_new_config_and_eviction_policy():
    lab = lab_with(("insert", CAT))
    assert lab.step("reset", LabConfig(8, 2, "mru")) == "reset: 8 pages of 2 token(s), eviction mru"
    assert lab.cache.page_size == 2 and lab.cache.eviction == "mru" and lab.cache.total_size == 0
    lab.step("insert", CAT)
    assert lab.cache.total_size == 6


def test_same_steps_draw_the_same_picture():
    steps = [("insert", CAT), ("insert", DOG), ("match", "the cat")]
    assert draw_lab(lab_with(*steps)).source == draw_lab(lab_with(*steps)).source


def test_view_buttons_slider_and_log():
    view = CacheLabView(CacheLab(LabConfig(num_pages=16)))
    view.prompt.value = CAT
    view.buttons["insert"].click()
    view.prompt.value = "the cat ran"
    view.buttons["match"].click()
    view.buttons["lock"].click()
    assert view.lab.frame.locks == (2,) and view.history.max == 3 and view.history.value == 3
    assert "<svg" in view.tree.value and "<svg" in view.pages.value and "locked #2" in view.log.value
    view.history.value = 1                            # the slider steps back
    assert view.lab.position == 1 and "inserted 6 tokens" in view.log.value
    view.buttons["unlock"].click()                    # refused: nothing locked at that point
    assert "refused" in view.log.value and view.lab.position == 1
    view.page_size.value, view.eviction.value = 2, "lfu"
    view.buttons["reset"].click()
    assert view.lab.cache.page_size == 2 and view.lab.cache.eviction == "lfu" and view.history.max == 2
