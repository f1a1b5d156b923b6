# Two entry points: `make demo` and `make test`. Both set everything up first.
PY := .venv/bin/python

.PHONY: setup demo test bench reliability gpu-check clean
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m shiftkit demo --out runs/demo

# pytest exit 5 means "no tests collected": treat it as a failure, never as green.
test: setup
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# Every reliability check (kills, hostile inputs, fuzzing, bad options, concurrency): regenerates
# benchmarks/RELIABILITY.md. 6-17 minutes on 2 shared cores (measured); a part of it runs in `make test`.
reliability: setup
	$(PY) -m tests.reliability.harness

# On a GPU machine: tests/gpu and the GPU benchmarks (under 6 minutes). Any Python with CUDA torch:
# PYTHON=python3 make gpu-check (no set-up step: such machines often have no network).
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf .venv runs .pytest_cache
