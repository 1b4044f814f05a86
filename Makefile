# Every target does its own set-up: a fresh clone needs only `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := $(shell find protos -name '*.proto')
GEN_DIR := clients/generated
# The protos are compiled under the virtual root clients/generated, so the generated modules are
# importable as clients.generated.messages_gateway.v1.* without the server.
PROTOC = $(PY) -m grpc_tools.protoc --proto_path=$(GEN_DIR)=protos \
	-I$$($(PY) -c 'import grpc_tools,os;print(os.path.join(os.path.dirname(grpc_tools.__file__),"_proto"))') \
	-I$$($(PY) -c 'import google.api.annotations_pb2 as m,os;print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')

.PHONY: venv protos check-protos test demo bench soak clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

protos: $(STAMP)
	rm -rf $(GEN_DIR)/messages_gateway
	$(PROTOC) --python_out=. --pyi_out=. --grpc_python_out=. \
		$(patsubst protos/%,$(GEN_DIR)/%,$(PROTO_SRC))
	find $(GEN_DIR)/messages_gateway -type d -exec touch {}/__init__.py \;

# Fails when the committed generated code differs from what the protos produce.
check-protos: $(STAMP)
	rm -rf .gen-check && mkdir -p .gen-check
	$(PROTOC) --python_out=.gen-check --pyi_out=.gen-check --grpc_python_out=.gen-check \
		$(patsubst protos/%,$(GEN_DIR)/%,$(PROTO_SRC))
	find .gen-check/$(GEN_DIR)/messages_gateway -type d -exec touch {}/__init__.py \;
	diff -r -x __pycache__ .gen-check/$(GEN_DIR)/messages_gateway $(GEN_DIR)/messages_gateway \
		|| (echo "generated code is stale: run 'make protos'"; rm -rf .gen-check; exit 1)
	rm -rf .gen-check

test: $(STAMP) check-protos
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m gateway.demo

bench: $(STAMP)
	$(PY) -m tests.bench

# Bounded mixed traffic with 5 % injected faults; make soak SOAK_SECONDS=60 for a short run.
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(PY) -m tests.reliability.soak --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
