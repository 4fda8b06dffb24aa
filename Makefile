# The one entry point for people and CI. `make test` on a fresh machine sets up and runs everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# What running needs only (make run, make demo): the project without its test and lint tools.
RUN_STAMP := $(VENV)/.installed-run

.PHONY: setup test test-fast test-model image-test lint bench run demo constraints clean

setup: $(STAMP)

# Reinstall when the project's dependencies or pins change; otherwise set-up is a no-op. The
# runtime dependencies install at the image's pins (constraints.txt): the tests and mypy check
# what ships, and a new release upstream (redis-py 8.2 typed what 8.1 did not) cannot turn a
# fresh machine's `make lint` red overnight.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -c constraints.txt
	touch $@ $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . -c constraints.txt
	touch $@

# The tests start their own redis-server on a free port (and, for end-to-end tests, their own
# docker-registry): nothing needs to be running, and no Redis of yours is touched. One process
# by default, so that -s shows what the tests print; PYTEST_ARGS='-n 4 --dist loadfile' runs
# the tiers in parallel (system and e2e took 62 s so, each file's corpus pushed once).
test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

# The unit and integration tiers (tests/unit, tests/integration): no registry, no `warmer up`;
# under a minute. Their tests mostly wait on the processes they start, so FAST_JOBS pytest-xdist
# workers (each with its own redis-server and moto on free ports) beat one per core: on 2 cores,
# 4 took 45-57 s where 2 took 72 s and 1 over 2 minutes.
FAST_JOBS ?= 4
test-fast: setup
	$(BIN)/pytest -n $(FAST_JOBS) tests/unit tests/integration $(PYTEST_ARGS)

# The delete-wins model (tests/integration/test_delete_wins_model.py) with a long budget:
# MODEL_EXAMPLES random runs of up to 25 steps each, on disk and on S3 (moto). `make test`
# runs it with a budget that finds each writer's race without the rule within seconds. On S3
# an example takes about 1.6 s on moto (500: 810 s), so the default long run takes over an hour.
MODEL_EXAMPLES ?= 3000
test-model: setup
	WARMER_MODEL_EXAMPLES=$(MODEL_EXAMPLES) $(BIN)/pytest -p no:randomly \
		tests/integration/test_delete_wins_model.py --timeout 3600 $(PYTEST_ARGS)

# The image tier: tests/image/run builds the Dockerfile with Debian's podman, on a bookworm base
# of its own (mmdebstrap), without Docker Hub or a Docker engine, then runs it (tests/image):
# --help, the default command healthy by its HEALTHCHECK, a push warmed, a clean SIGTERM, the
# compose services. Needs root and podman, buildah, mmdebstrap, runc, iproute2 (.ci/run installs
# them); about 4 minutes the first time (3.7 measured: base 60 s, build 45 s, tests 115 s),
# under 2 once its cache (~/.cache/registry-cache-warmer) holds the base and the build's layers.
image-test: setup
	tests/image/run $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Everything on one machine, on throwaway defaults: see `warmer up --help`. With
# REGISTRY_CONFIG=/path/to/config.yml, storage, cache Redis and version come from that registry's
# own config (WARMER_REGISTRY_CONFIG). PORT: where the receiver listens.
REGISTRY_CONFIG ?=
PORT ?= 8000
run: $(RUN_STAMP)
	$(if $(REGISTRY_CONFIG),WARMER_REGISTRY_CONFIG=$(abspath $(REGISTRY_CONFIG)) )$(BIN)/warmer up --dev --port $(PORT)

# Needs docker-registry and skopeo (apt-get install docker-registry skopeo redis-server).
demo: $(RUN_STAMP)
	$(BIN)/warmer demo

bench: setup
	$(BIN)/python bench/rewarm.py

# Pins for the container image: every runtime dependency, as a clean install resolves it today.
constraints:
	rm -rf .constraints-venv && $(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet .
	# redis needs async-timeout before Python 3.11.3 (bookworm's 3.11.2, the image's base): a
	# freeze on a newer Python leaves it out, so its pin is added, for those Pythons only.
	{ .constraints-venv/bin/pip freeze --exclude registry-cache-warmer; \
	  echo 'async-timeout==5.0.1 ; python_full_version < "3.11.3"'; } | LC_ALL=C sort -f > constraints.txt
	rm -rf .constraints-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
