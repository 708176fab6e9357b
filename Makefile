# Plain entry points; every target sets up the stack's venv first (seconds when it is up to date).
#   STACK=upstream (default): OpenMMLab's releases in .venv/
#   STACK=onedl:              the maintained OneDL forks in .venv-onedl/
STACK ?= upstream
ifeq ($(STACK),upstream)
VENV := .venv
else ifeq ($(STACK),onedl)
VENV := .venv-onedl
else
$(error STACK=$(STACK) is not a supported stack; use STACK=upstream or STACK=onedl)
endif
PY := $(VENV)/bin/python

.PHONY: setup test test-slow lint demo clean

setup:
	STACK=$(STACK) VENV=$(CURDIR)/$(VENV) bash tools/setup_env.sh

# One pytest worker per CPU (pytest-xdist), the tests spread one at a time to whichever worker is
# free; at most 8: each worker holds its own torch, mmdet and mmseg, and the longest tests alone
# take over a minute, so more workers would add memory, not speed.
XDIST := -n auto --maxprocesses 8 --dist worksteal

# The README's test command; .ci/run runs exactly this, once per stack.
test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" $(XDIST)

# Long end-to-end runs kept out of the default run.
test-slow: setup
	$(PY) -m pytest -m slow $(XDIST)

lint: setup
	$(VENV)/bin/ruff check .

# The README's main job on the built-in demo data.
demo: setup
	PYTHON=$(PY) bash tools/demo.sh

clean:
	rm -rf work_dirs data .pytest_cache
