# One entry point for the README's commands. Every target installs what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := build/.installed
SOURCES := CMakeLists.txt pyproject.toml $(wildcard cmake/*) $(shell find cpp python -type f -not -name '*.pyc' 2>/dev/null)
FASHION_MNIST := /usr/share/datasets/fashion-mnist
WHEEL_PYTHONS ?= 3.10,3.11,3.12,3.13

.PHONY: demo test bench wheel wheels sdist install deps data clean

demo: $(STAMP) data                ## the main job: the classic MNIST example (Fashion-MNIST offline)
	$(PYTHON) -m fusedlr.demo $(ARGS)

test: $(STAMP) data                ## the test suite
	$(PYTHON) -m pytest $(ARGS)

bench: $(STAMP) data               ## benchmarks vs torch, then the report (bench/README.md)
	$(PYTHON) -m pytest bench -m "not slow" --benchmark-json=bench/results/latest.json $(ARGS)
	$(PYTHON) -m pytest bench -m slow --benchmark-json=bench/results/slow.json $(ARGS)
	$(PYTHON) bench/report.py bench/results/latest.json bench/results/slow.json

wheel: deps                        ## this Python's wheel in dist/, repaired to a manylinux tag, for this torch
	$(PYTHON) tools/build_wheels.py

wheels: deps                       ## wheels for Python 3.10-3.13 + the sdist, each smoke-tested in a fresh venv
	$(PYTHON) tools/build_wheels.py --pythons $(WHEEL_PYTHONS) --smoke --sdist

sdist: deps                        ## the source distribution in dist/
	$(PYTHON) -m build --sdist --no-isolation --outdir dist .

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
