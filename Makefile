# Two commands do all set-up:  `make lab` (open the chapters)  and  `make test` (run every test);
# `make book` builds the chapters' static HTML edition. All build .venv once and are quick when it
# is already up to date.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch 2.13.0's CPU wheel, where a machine keeps one on disk, instead of PyPI's CUDA build.
WHEELS := $(wildcard /opt/wheels)
PIP    := $(PY) -m pip install -q $(if $(WHEELS),--find-links $(WHEELS))

# SGLang's source, the reference radixlib is compared against: pyproject's [faithful] extra,
# installed without its dependencies (its own torch/transformers pins would replace ours).
SGLANG_PIN := sglang==0.5.12
# The release `make faithful` compares against: the pinned one unless `make faithful SGLANG=x.y.z`.
SGLANG ?= $(patsubst sglang==%,%,$(SGLANG_PIN))
# Every install takes its versions from the lock of the tested ones (`make lock` rewrites it).
LOCK   := requirements.lock
EXTRAS := model,lab,test,book,cluster

.PHONY: lab test book lint bench figures dot chromium clean lock upgrade-check execute faithful

lab: $(STAMP) dot
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP) dot chromium lint
	$(PY) -m pytest

# The static HTML edition (notebooks/_config.yml, Jupyter Book 1) into _build/html: the chapters'
# committed outputs, nothing executed, nothing fetched. --all: every page anew (Sphinx skips copying
# a changed stylesheet when no page changed). tests/browser/test_book.py builds it the same way.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build notebooks --path-output . --all --warningiserror --keep-going
	@echo "The book is built: open _build/html/index.html in a browser."

lint: $(STAMP)
	$(PY) -m ruff check .

# Every benchmark, one after the other (each prints its side-by-side table; none is a test;
# benchmarks/timing.py is their shared timing code, not a benchmark). About 40 minutes.
bench: $(STAMP)
	for b in benchmarks/*.py; do [ $$b = benchmarks/timing.py ] && continue; echo "== $$b"; $(PY) $$b || exit 1; done

figures: $(STAMP) dot
	$(PY) figures/build.py

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) -c $(LOCK) pip
	$(PIP) -c $(LOCK) -e '.[$(EXTRAS)]'
	$(PIP) -c $(LOCK) --no-deps '$(SGLANG_PIN)'
	touch $(STAMP)

# The lock, from what .venv holds now (after a deliberate upgrade that passed `make test`).
lock: $(STAMP)
	{ sed -n '/^#/p' $(LOCK); $(PY) -m pip freeze --all --exclude-editable | sed 's/+cpu$$//' | LC_ALL=C sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

# The faithfulness suite against one SGLang release (default: the pinned one); another release is
# installed --no-deps into .sglang/ beside .venv, e.g. `make faithful SGLANG=0.5.23`. The report
# names each comparison that differs, with its first difference.
faithful: $(STAMP)
	.ci/faithful $(PY) $(SGLANG)

# The newest versions pyproject.toml allows, in a venv of their own (.venv-upgrade), without the
# lock: which tests and chapters break, and which versions moved. It changes nothing here.
upgrade-check: dot
	.ci/upgrade-check $(LOCK) '$(EXTRAS)' '$(SGLANG_PIN)'

# Re-execute chapters in place, as they are committed (no timing metadata): make execute NB=notebooks/05_*.ipynb
execute: $(STAMP) dot
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.store_widget_state=False $(NB)

# $(call apt,COMMAND,PACKAGE): install Debian's PACKAGE if COMMAND is missing and we are root.
apt = command -v $(1) >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
      && apt-get update -qq && apt-get install -y -qq $(2) >/dev/null; }

# Graphviz's `dot` renders the tree drawings.
dot:
	@$(call apt,dot,graphviz) || { echo "graphviz 'dot' is missing: run 'sudo apt-get install graphviz' (or 'conda install graphviz') and retry"; exit 1; }

# Debian's Chromium drives the real-browser test (tests/browser); without it that test is skipped.
chromium:
	@$(call apt,chromium,chromium) || echo "chromium is missing, so the browser test will be skipped: 'sudo apt-get install chromium' runs it"

clean:
	rm -rf $(VENV) .venv-upgrade .sglang .pytest_cache .hypothesis _build
