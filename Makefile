# workflow-harness: every target creates .venv on first use, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= calibrate
ARGS ?=

.PHONY: help install bench test faults perf nightly up down clean

help:
	@echo "make bench SCENARIO=name ARGS='...'   run a scenario in every mode and print the comparison table"
	@echo "make test                              run the test suite"
	@echo "make faults                            inject each fault into a real run: fault | outcome | records lost | left behind"
	@echo "make perf                              measure the harness's own overhead (pytest-benchmark)"
	@echo "make nightly SCENARIO=name             run, compare with the last comparable runs, exit 0/1/3/4"
	@echo "make up / make down                    PostgreSQL, supplier endpoints and NFS-like volume in Docker"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(BIN)/harness run $(SCENARIO) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults -p no:randomly -q $(ARGS)

perf: $(STAMP)
	$(BIN)/python -m pytest tests/perf --benchmark-only --benchmark-columns=min,median,max,rounds -p no:randomly -s $(ARGS)

nightly: $(STAMP)
	$(BIN)/harness nightly $(SCENARIO) $(ARGS)

up:
	docker compose up -d --wait

down:
	docker compose down

clean:
	rm -rf $(VENV) .harness .pytest_cache .benchmarks
