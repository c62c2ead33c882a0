# The two commands of the Quick start are `make demo` and `make test`; both set up the environment first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= osmesa
# Never let tests or demos talk to other ROS 2 graphs on the network.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup demo test fuzz soak bench evaluate clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m clip_perception.cli demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

fuzz: setup
	CLIP_PERCEPTION_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q test/test_decode_fuzz.py test/test_command_fuzz.py

soak: setup
	$(PY) -m clip_perception.cli soak --frames 5000

bench: setup
	$(PY) -m clip_perception.cli bench $(BENCH_ARGS)

evaluate: setup
	$(PY) -m clip_perception.cli evaluate --scenes 20 --seed 0 --report out/evaluate

clean:
	rm -rf build install log out .pytest_cache
