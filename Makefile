# Two entry points (see README): `make test` (the test suite, then `mkdocs build --strict`) and `make demo`.
# Both create .venv at the repo root on first use and reuse it afterwards; the stamp file re-installs only when
# pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export,app,docs]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

demo: $(STAMP)
	$(VENV)/bin/uniformer demo

clean:
	rm -rf $(VENV) demo_out site
