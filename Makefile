# Two commands a newcomer needs: `make run` (the dashboard) and `make test` (the suite).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
LS_VENV ?= .venv-labelstudio
export OGDASH_LABEL_STUDIO_VENV := $(abspath $(LS_VENV))
PORT    ?= 8501
HOST    ?= 127.0.0.1

.PHONY: run test test-fast test-browser labelstudio bench clean

$(VENV)/.runtime: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .   # the ogdash command, on this checkout
	touch $@

$(VENV)/.testing: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# The Label Studio server the labelstudio tests start, in its own environment (its pins clash with ours), and its
# database migrated once into a template that each test session copies.
$(LS_VENV)/.installed: requirements-labelstudio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q -r requirements-labelstudio.txt
	rm -rf $(LS_VENV)/template
	$(PYTHON) tests/labelstudio_server.py prepare
	touch $@

labelstudio: $(LS_VENV)/.installed

run: $(VENV)/.runtime
	@if [ "$(HOST)" != "127.0.0.1" ] && ! grep -qs '^\[auth\]' .streamlit/secrets.toml; then \
		echo "warning: HOST=$(HOST) without sign-in: anyone who reaches it can review (README, 'Running it for a team')" >&2; fi
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

test: $(VENV)/.testing $(LS_VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.testing
	$(PY) -m pytest -m "not browser"

test-browser: $(VENV)/.testing
	$(PY) -m pytest -m browser

bench: $(VENV)/.testing
	PYTHONPATH=. $(PY) benchmarks/gradients.py
	PYTHONPATH=. $(PY) benchmarks/mnist_flow.py
	PYTHONPATH=. $(PY) benchmarks/scale.py
	PYTHONPATH=. $(PY) benchmarks/detection.py
	PYTHONPATH=. $(PY) benchmarks/fixes.py
	PYTHONPATH=. $(PY) benchmarks/review_latency.py

clean:
	rm -rf $(VENV) $(LS_VENV) .pytest_cache
