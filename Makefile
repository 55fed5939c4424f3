# make test: everything a fresh clone needs, then the whole suite against a real broker.
# make up:   broker, worker, first version, retrain controller and edge (http://127.0.0.1:8000) in the
#            foreground; Ctrl-C stops them. DATA=u.data loads that MovieLens file into a new system.
# make reset: stop them and delete the system's data, to start over.
# make compose-check: docker-compose.yml built and run for real, the loop checked (needs a Docker
#            engine; makes the Debian base image here when no registry is reachable).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
VELOX := $(VENV)/bin/velox
STAMP := $(VENV)/.installed
# uv installs: from its cache alone when that holds everything (a second clone on one machine
# installs in seconds; pip, or uv online, spend most of a minute asking the index again), else from
# the index. setuptools says at every editable install of a flat layout that a folder named like the
# package may shadow it: a box of warnings as the first thing `make up` prints, about what is intended.
UV := PYTHONWARNINGS=ignore $(VENV)/bin/uv pip install --quiet --python $(PY)
comma := ,
EDITABLE = $(UV) --offline -e '.[$(1)]' 2>/dev/null || $(UV) -e '.[$(1)]'

.PHONY: install jars test up down reset bench clean compose-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv
	$(call EDITABLE,test)
	touch $@

jars: install
	$(VELOX) jars

test: jars  # one pytest process per core (pytest-xdist); a module's tests and fixtures stay in one
	$(PY) -m pytest -n auto --dist loadfile

up: jars  # DATA=path/to/u.data loads that MovieLens file instead of pyspark's sample; ENGINE=faust
	$(VELOX) up $(if $(DATA),--ratings $(DATA)) $(if $(ENGINE),--engine $(ENGINE))

bench: jars  # every benchmark, then bench/README.md from their results (about 30 minutes)
	$(call EDITABLE,test$(comma)bench)
	$(PY) bench/broker_start.py --runs 3 --json bench/results/broker_start.json
	$(PY) bench/stream.py --json bench/results/stream.json
	$(PY) bench/stream.py --latency-runs 3 --events 20000 --engines kafka --json bench/results/freshness.json
	$(PY) bench/swap.py --json bench/results/swap.json
	$(PY) bench/takeover.py --json bench/results/takeover.json
	$(PY) bench/restart.py --json bench/results/restart.json
	$(PY) bench/corrections.py --json bench/results/corrections.json
	$(PY) bench/topk.py --json bench/results/topk.json
	$(PY) bench/retrain.py --json bench/results/retrain.json
	$(PY) bench/serve.py --json bench/results/serve.json --png bench/results/serve.png
	$(PY) bench/containers.py --json bench/results/containers.json
	$(PY) bench/accuracy.py
	$(PY) bench/stream.py --events 200000 --users 20000 --rules sgd,implicit --no-quix --engines kafka \
		--json bench/results/stream-implicit.json
	$(VELOX) evaluate ../shared/data/ml-100k/u.data --feedback implicit --json bench/results/ranking-ml-100k.json
	$(VELOX) evaluate --feedback implicit --json bench/results/ranking-sample.json
	$(PY) bench/report.py

compose-check: install  # build the images, up, predict, observe, crash the worker, down and up, down -v
	sh docker/base-image.sh
	$(PY) docker/check.py

down: install  # a broker left by `velox kafka start`
	$(VELOX) kafka stop

reset: install  # stop what `make up` started and delete all of the system's data (asks first)
	$(VELOX) reset

clean: down
	rm -rf $(VENV)
