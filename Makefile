# Plain entry points; every target sets up .venv/ first (seconds when it is up to date).
PY := .venv/bin/python

.PHONY: setup test test-slow lint demo clean

setup:
	bash tools/setup_env.sh

# The README's test command; .ci/run runs exactly this.
test: setup
	.venv/bin/ruff check .
	$(PY) -m pytest -m "not slow"

# Long end-to-end runs kept out of the default run.
test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	.venv/bin/ruff check .

# The README's main job on the built-in demo data.
demo: setup
	bash tools/demo.sh

clean:
	rm -rf work_dirs data .pytest_cache
