# Every target does its own set-up: a fresh clone needs only `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := $(shell find protos -name '*.proto')
# The protos are compiled under the virtual root messages_gateway_client/generated into clients/
# (the client distribution's folder), so the generated modules land in GEN_DIR and are importable
# as messages_gateway_client.generated.messages_gateway.v1.* without the server.
GEN_OUT := clients
GEN_ROOT := messages_gateway_client/generated
GEN_DIR := $(GEN_OUT)/$(GEN_ROOT)
GEN_SRC = $(patsubst protos/%,$(GEN_ROOT)/%,$(PROTO_SRC))
PROTOC = $(PY) -m grpc_tools.protoc --proto_path=$(GEN_ROOT)=protos \
	-I$$($(PY) -c 'import grpc_tools,os;print(os.path.join(os.path.dirname(grpc_tools.__file__),"_proto"))') \
	-I$$($(PY) -c 'import google.api.annotations_pb2 as m,os;print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')

# The contract's tools come from the npm registry, pinned by lockfiles and installed into the
# project (never globally): buf in tools/, the Node consumer's packages in clients/node/.
NPM ?= npm
TOOLS_STAMP := tools/node_modules/.installed
NODE_STAMP := clients/node/node_modules/.installed
BUF := tools/node_modules/.bin/buf
# googleapis protos for buf, taken from the venv's googleapis-common-protos (see buf.yaml).
BUF_DEPS := .buf-deps/googleapis
BUF_DEPS_STAMP := $(BUF_DEPS)/.copied
GOOGLEAPIS_FILES := google/api/annotations.proto google/api/http.proto google/rpc/code.proto \
	google/rpc/error_details.proto google/rpc/status.proto
# The shipped descriptor set (source info and imports, google/rpc's error details included) for
# transcoders, grpcurl and other reflection-less tools; the Node consumer loads it too.
DESCRIPTOR_SET := $(GEN_DIR)/messages_gateway.binpb
# The last released contract: `buf breaking` compares protos/ against it. Refresh it only when a
# contract version is released (`make contract-baseline`), never to silence a breaking change.
BASELINE := protos/baseline.binpb
BUF_BUILD_SET = $(BUF) build --as-file-descriptor-set

.PHONY: venv tools node-deps buf-deps protos check-protos buf-check contract-baseline test demo \
	bench stress soak clean

venv: $(STAMP)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools/package.json tools/package-lock.json
	cd tools && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: $(NODE_STAMP)

$(NODE_STAMP): clients/node/package.json clients/node/package-lock.json
	cd clients/node && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

buf-deps: $(BUF_DEPS_STAMP)

$(BUF_DEPS_STAMP): $(STAMP) tools/googleapis.sha256
	rm -rf $(BUF_DEPS) && mkdir -p $(BUF_DEPS)
	site=$$($(PY) -c 'import google.api.annotations_pb2 as m,os;print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))') \
		&& cd $$site && cp --parents $(GOOGLEAPIS_FILES) $(CURDIR)/$(BUF_DEPS)/
	cd $(BUF_DEPS) && sha256sum --quiet -c $(CURDIR)/tools/googleapis.sha256 \
		|| (echo "googleapis protos differ from tools/googleapis.sha256"; exit 1)
	touch $@

# pip, setuptools and the runtime dependencies (transitive ones included) from the image's lock
# files, hashes checked; then the project and its dev tools (pinned in pyproject.toml) on top.
LOCKS := deploy/build-requirements.lock deploy/requirements.lock

$(STAMP): pyproject.toml $(LOCKS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r deploy/build-requirements.lock
	$(PY) -m pip install -q --require-hashes --no-deps -r deploy/requirements.lock
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

protos: $(STAMP) $(TOOLS_STAMP) $(BUF_DEPS_STAMP)
	rm -rf $(GEN_DIR)/messages_gateway
	$(PROTOC) --python_out=$(GEN_OUT) --pyi_out=$(GEN_OUT) --grpc_python_out=$(GEN_OUT) $(GEN_SRC)
	find $(GEN_DIR)/messages_gateway -type d -exec touch {}/__init__.py \;
	$(BUF_BUILD_SET) -o $(DESCRIPTOR_SET)

# Fails when the committed generated code differs from what the protos produce.
check-protos: $(STAMP) $(TOOLS_STAMP) $(BUF_DEPS_STAMP)
	rm -rf .gen-check && mkdir -p .gen-check
	$(PROTOC) --python_out=.gen-check --pyi_out=.gen-check --grpc_python_out=.gen-check $(GEN_SRC)
	find .gen-check/$(GEN_ROOT)/messages_gateway -type d -exec touch {}/__init__.py \;
	diff -r -x __pycache__ .gen-check/$(GEN_ROOT)/messages_gateway $(GEN_DIR)/messages_gateway \
		|| (echo "generated code is stale: run 'make protos'"; rm -rf .gen-check; exit 1)
	$(BUF_BUILD_SET) -o .gen-check/messages_gateway.binpb
	cmp -s .gen-check/messages_gateway.binpb $(DESCRIPTOR_SET) \
		|| (echo "$(DESCRIPTOR_SET) is stale: run 'make protos'"; rm -rf .gen-check; exit 1)
	rm -rf .gen-check

# Lint (STANDARD, exceptions justified in buf.yaml), formatting, and no breaking change against
# the last released contract. Offline: nothing here reaches the BSR.
buf-check: $(TOOLS_STAMP) $(BUF_DEPS_STAMP)
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(BUF) breaking protos --against $(BASELINE)

contract-baseline: $(TOOLS_STAMP) $(BUF_DEPS_STAMP)
	$(BUF) build protos -o $(BASELINE)

# The whole suite runs on the server's default loop (uvloop); the fault, cancellation, Redis,
# streaming and upstream suites run again on the standard library's loop (server.event_loop):
# every test that talks to Redis from the test's own loop is in the list (tests/test_supervisor.py's
# Redis tests talk to it from gateway processes, on their own loop). Between the two runs, a 60 s
# soak with its leak gates (docs/reliability.md, "Tests and soak").
ASYNCIO_SUITES := tests/reliability tests/rpc/test_streaming.py tests/cache tests/upstream \
	tests/operations/test_shared_idempotency.py tests/credentials/test_limits.py \
	tests/security/test_cache_staleness.py \
	tests/operations/test_ownership.py::test_deleting_a_thread_empties_every_replicas_cache
# Left out of the second run: tests whose gateway is a subprocess on its own (default) loop, the
# wire and JSON fuzzers, and the docs check, which the test process's loop does not change.
ASYNCIO_SAME := tests/reliability/test_shutdown.py tests/reliability/test_soak.py \
	tests/reliability/test_wire_fuzz.py tests/reliability/test_upstream_mutations.py \
	tests/reliability/test_fuzz.py tests/reliability/test_plan.py
CI_SOAK_SECONDS := 60
# The event-loop rows (C7) run first, on each loop, in a small process of their own, as a
# gateway is. Their 50 ms bound counts the loop thread's CPU, the kernel's part included; in the
# 1,600-test process (~750 MiB, its heap fragmented) faulting in and freeing a large body's pages
# cost more system time (measured: 32-44 ms of a 45-70 ms step, against 12-28 ms of 20-30 ms
# alone), which is the test process's size, not the gateway's (docs/reliability.md).
LOOP_LAG := tests/reliability/test_loop_lag.py
test: $(STAMP) check-protos buf-check $(NODE_STAMP)
	$(PY) -m pytest -q $(LOOP_LAG)
	PYTEST_EVENT_LOOP=asyncio $(PY) -m pytest -q $(LOOP_LAG)
	$(PY) -m pytest --ignore=$(LOOP_LAG)
	$(PY) -m tests.reliability.soak --seconds $(CI_SOAK_SECONDS)
	PYTEST_EVENT_LOOP=asyncio $(PY) -m pytest -q $(ASYNCIO_SUITES) $(addprefix --ignore=,$(ASYNCIO_SAME) $(LOOP_LAG))

demo: $(STAMP)
	$(PY) -m gateway.demo

bench: $(STAMP)
	$(PY) -m tests.bench

# The reliability suite and the S3 tenant-isolation machine at the fault plan's full scale
# (counts: scale() in tests/reliability/conftest.py).
stress: $(STAMP)
	RELIABILITY_STRESS=1 $(PY) -m pytest -q tests/reliability tests/security/test_tenant_isolation_stateful.py

# Bounded mixed traffic with 5 % injected faults and client cancels; fails on a leak (see
# docs/reliability.md, "Tests and soak"); make soak SOAK_SECONDS=60 for a short run.
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(PY) -m tests.reliability.soak --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tools/node_modules clients/node/node_modules .buf-deps
