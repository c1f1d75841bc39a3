"""The cache lab in JupyterLab: ipywidgets over a ``lab.CacheLab``.

The view only calls ``CacheLab.step``/``goto`` and redraws (``viz.draw_lab``,
``viz.draw_pages``); everything it shows, a notebook cell can drive from code.
"""
from __future__ import annotations

from html import escape

import ipywidgets as w
from IPython.display import display

from .eviction import POLICIES
from .lab import ACTIONS, CacheLab, LabConfig
from .viz import draw_lab, draw_pages, inline_svg


class CacheLabView:
    """ipywidgets over a ``CacheLab``: prompt box, a button per action, config, history slider.

    Every button calls ``lab.step``; the slider calls ``lab.goto``; after either the tree
    and the page grid are redrawn as SVG and the log line shows the step's message.
    """

    def __init__(self, lab: CacheLab | None = None):
        self.lab = lab or CacheLab()
        config = self.lab.frame.config
        self.prompt = w.Text(value="the cat sat on the mat", description="prompt")
        self.node_id = w.Text(value="", description="node #", placeholder="last match / last lock")
        self.evict_tokens = w.BoundedIntText(value=4, min=0, max=10**6, description="evict N")
        self.num_pages = w.BoundedIntText(value=config.num_pages, min=1, max=256, description="pages")
        self.page_size = w.Dropdown(options=[1, 2, 4], value=config.page_size, description="page size")
        self.eviction = w.Dropdown(options=list(POLICIES), value=config.eviction, description="eviction")
        self.buttons = {a: w.Button(description=a) for a in ACTIONS}
        for action, button in self.buttons.items():
            button.on_click(lambda _, a=action: self.click(a))
        self.history = w.IntSlider(value=0, min=0, max=0, description="history")
        self.history.observe(lambda change: self.show(change["new"]), names="value")
        self.log, self.tree, self.pages = w.HTML(), w.HTML(), w.HTML()
        self.box = w.VBox([w.HBox([self.prompt, self.node_id, self.evict_tokens]),
                           w.HBox(list(self.buttons.values())),
                           w.HBox([self.num_pages, self.page_size, self.eviction]),
                           self.history, self.log, self.tree, self.pages])
        for widget, css in ((self.box, "cache-lab"), (self.log, "cache-lab-log"),
                            (self.tree, "cache-lab-tree"), (self.pages, "cache-lab-pages")):
            widget.add_class(css)                   # stable hooks for the browser test
        self.redraw()

    def click(self, action: str) -> None:
        """What a button does: one ``lab.step`` with the controls' values, then redraw."""
        try:
            self.lab.step(action, self._arg(action))
        except (ValueError, TypeError, RuntimeError) as error:
            self.log.value = f"<b>{action}</b> refused: {escape(str(error))}"
            return
        self.redraw()

    def show(self, position: int) -> None:
        """Move through the history (the slider's handler)."""
        if position != self.lab.position:
            self.lab.goto(position)
            self.redraw()

    def redraw(self) -> None:
        frame = self.lab.frame
        self.history.max = len(self.lab.history) - 1
        self.history.value = self.lab.position
        self.log.value = f"<b>{frame.action}</b>: {escape(frame.message)}"
        self.tree.value = inline_svg(draw_lab(self.lab))
        self.pages.value = inline_svg(draw_pages(self.lab.cache))

    def _arg(self, action: str):
        if action in ("insert", "match"):
            return self.prompt.value
        if action in ("lock", "unlock"):
            return int(self.node_id.value.strip().lstrip("#")) if self.node_id.value.strip() else None
        if action == "evict":
            return self.evict_tokens.value
        return LabConfig(self.num_pages.value, self.page_size.value, self.eviction.value)

    def _ipython_display_(self) -> None:
        display(self.box)

