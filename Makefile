# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp
DEMO := demo

VENV_TF4 ?= .venv-tf4
STAMP_TF4 := $(VENV_TF4)/.installed-stamp
# The tests that touch transformers' model classes, rerun on the 4.x line.
TF4_TESTS := tests/test_llava.py tests/test_labels.py tests/test_eventgpt.py tests/test_runner.py tests/test_end_to_end.py \
	tests/test_meta_build.py tests/test_published.py tests/test_settings.py \
	tests/test_generation.py

.PHONY: demo test test-tf4 bench lint browser clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Tiny random-weight models on the built-in synthetic data, then the HTML report comparing them.
demo: $(STAMP)
	rm -rf $(DEMO)
	$(VENV)/bin/capture --model tiny-llava --samples 8 --out $(DEMO)/traces
	$(VENV)/bin/capture --model tiny-video-llava --samples 8 --out $(DEMO)/traces
	$(VENV)/bin/capture --model tiny-eventgpt --samples 8 --out $(DEMO)/traces
	$(VENV)/bin/analyze $(DEMO)/traces --html --out $(DEMO)/analysis
	@echo "open $(DEMO)/analysis/report.html in a browser; traces open in https://ui.perfetto.dev"

# Debian's chromium for the report's headless-browser test (skipped with a reason if it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser test will skip"; }

$(STAMP_TF4): pyproject.toml constraints-tf4.txt
	python3 -m venv $(VENV_TF4)
	$(VENV_TF4)/bin/python -m pip install -q --upgrade pip
	$(VENV_TF4)/bin/python -m pip install -q -c constraints-tf4.txt torch
	$(VENV_TF4)/bin/python -m pip install -q -c constraints-tf4.txt -e '.[dev]'
	touch $(STAMP_TF4)

# The whole suite on transformers 5.x, then the model-facing tests on transformers 4.57.
test: $(STAMP) browser
	$(PY) -m pytest -q
	$(MAKE) test-tf4

test-tf4: $(STAMP_TF4)
	$(VENV_TF4)/bin/python -m pytest -q -p no:cacheprovider $(TF4_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check capture analyze tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VENV_TF4) $(DEMO) benchmarks/out
