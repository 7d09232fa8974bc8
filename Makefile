# `make repro`: set up .venv, then run the DVC pipeline on the active profile (params.yaml), two
# stages at a time (scripts/repro: each stage through `dvc repro --single-item`; REPRO_JOBS=1 is
# plain `dvc repro`).
# `make test`: set up .venv, then run the test suite.
.PHONY: setup repro test bench paper-smoke

setup:
	@scripts/setup-venv

REPRO_JOBS ?= 2

repro: setup
	@. .venv/bin/activate && DVC_NO_ANALYTICS=1 scripts/repro --jobs $(REPRO_JOBS)

test: setup
	@. .venv/bin/activate && DVC_NO_ANALYTICS=1 python -m pytest

bench: setup
	@. .venv/bin/activate && python -m benchmarks.run

# the paper profile's whole DAG on CPU, on small generated archives, in a scratch copy
paper-smoke: setup
	@. .venv/bin/activate && DVC_NO_ANALYTICS=1 python scripts/paper_smoke.py
