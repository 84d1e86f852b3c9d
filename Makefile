# One entry point for the README's commands. Every target installs what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := build/.installed
SOURCES := CMakeLists.txt pyproject.toml cmake/torch_info.py $(shell find cpp python -type f -not -name '*.pyc' 2>/dev/null)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test bench wheel install deps data clean

demo: $(STAMP) data                ## the main job: the classic MNIST example (Fashion-MNIST offline)
	$(PYTHON) -m fusedlr.demo $(ARGS)

test: $(STAMP) data                ## the test suite
	$(PYTHON) -m pytest $(ARGS)

bench: $(STAMP) data               ## benchmarks vs torch, then the report (bench/README.md)
	$(PYTHON) -m pytest bench -m "not slow" --benchmark-json=bench/results/latest.json $(ARGS)
	$(PYTHON) -m pytest bench -m slow --benchmark-json=bench/results/slow.json $(ARGS)
	$(PYTHON) bench/report.py bench/results/latest.json bench/results/slow.json

wheel: deps                        ## a wheel in dist/ for this torch
	$(PIP) wheel --no-build-isolation --no-deps . -w dist

install: $(STAMP)

deps: build/.deps
build/.deps: requirements/dev.txt
	$(PIP) install -r requirements/dev.txt
	@mkdir -p build && touch $@

# Non-editable build against the installed torch; rebuilt when a source changes (incremental:
# scikit-build-core keeps its build tree under build/).
$(STAMP): build/.deps $(SOURCES)
	$(PIP) install --no-build-isolation --no-deps .
	@touch $@

data:                              ## real Fashion-MNIST IDX files from Debian (offline)
	@test -d $(FASHION_MNIST) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }; \
	  else sudo apt-get install -y dataset-fashion-mnist; fi; }

clean:
	rm -rf build dist
