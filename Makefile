# workflow-harness: every target creates .venv on first use, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= calibrate
ARGS ?=

.PHONY: help install bench article sweep test faults perf nightly up down clean

help:
	@echo "make bench SCENARIO=name ARGS='...'   run a scenario in every mode and print the comparison table"
	@echo "make article                           the article's incident at a documented scale: serial vs naive fan-out vs capped hybrid"
	@echo "make sweep SCENARIO=name ARGS='--vary workers=1..256'   a concurrency sweep with a USL fit and a recommendation"
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

# The article's 10,000-file incident, scaled to run in under 10 minutes on 2 cores (README,
# "The article, reproduced"): 5 suppliers x 30 files of ~1 MB (150 files), fetched from
# rate-limited supplier endpoints (4 requests/s each), staged on the NAS volume (choking, soft
# mount timeo 2 s, EBUSY past 8 handles per file), loaded into PostgreSQL, output written back.
ARTICLE_PARAMS := --param source=api --param suppliers=5 --param files_per_supplier=30 \
	--param file_kb=1024 --param heavy_tail=false --param rate=4 --param stage=true \
	--param write_back=true --param nas_timeout_ms=2000 --param nas_max_handles=8 \
	--param ceiling_rows=0
ARTICLE_MODES := serial,threads[150]+fanout(20,500),threads[16]+capped(3,200ms)

article: $(STAMP)
	$(BIN)/harness run csv_ingest --modes '$(ARTICLE_MODES)' $(ARTICLE_PARAMS) \
		--max-memory 768 --repeat 3 --no-warmup $(ARGS)

sweep: $(STAMP)
	$(BIN)/harness sweep $(SCENARIO) $(ARGS)

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
