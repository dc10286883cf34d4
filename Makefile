# kubelite build and test entry points. Every target installs what it needs
# itself (hack/deps.sh is idempotent), so `make up` and `make test` work on a
# fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find proto -name '*.proto' | sort)
PROTOC := $(PY) -m grpc_tools.protoc -Iproto --python_out=pkg --pyi_out=pkg --grpc_python_out=pkg \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=pkg

.PHONY: deps proto proto-check lint typecheck layers check unit integration e2e images test bench bench-scheduler bench-kubelet bench-cluster up down cluster-up cluster-down clean

deps:
	@bash hack/deps.sh

proto: deps
	@find pkg/kubelite/api -name '*_pb2*.py*' -delete
	$(PROTOC) $(PROTOS)
	@bash hack/proto-init.sh

# Regenerates into a scratch tree and compares: fails when committed code drifts.
proto-check: deps
	@bash hack/proto-check.sh

lint: deps
	$(VENV)/bin/ruff check pkg cmd tests bench

typecheck: deps
	$(VENV)/bin/mypy

layers: deps
	$(VENV)/bin/lint-imports

check: proto-check lint typecheck layers

unit: deps
	$(VENV)/bin/pytest -q tests/unit

integration: deps
	@bash hack/docker.sh
	$(VENV)/bin/pytest -q tests/integration

# The local cluster's node containers need a Docker engine (and debootstrap for the node image).
e2e: deps
	@bash hack/docker.sh
	$(VENV)/bin/pytest -q tests/e2e

# kubelite/node, kubelite/dns and kubelite/pause for this tree (cached by content: a no-op when up to date).
images: deps
	@bash hack/docker.sh
	$(VENV)/bin/kubelite cluster build-image

test: check unit integration e2e

# Every component's figures beside its raw baseline (about 25 minutes here); each also runs alone.
bench: deps
	@bash hack/docker.sh
	$(PY) -m bench.run
	$(PY) -m bench.rest
	$(PY) -m bench.fieldmanager
	$(PY) -m bench.scheduler
	$(PY) -m bench.kubelet
	$(PY) -m bench.controllers --quick
	$(PY) -m bench.proxy
	$(PY) -m bench.dns
	$(PY) -m bench.cluster

bench-scheduler: deps
	$(PY) -m bench.scheduler

# Pod startup latency on one node beside raw Docker (part of `make bench`).
bench-kubelet: deps
	@bash hack/docker.sh
	$(PY) -m bench.kubelet

# A local cluster's timings (cluster up, raw node boot) and memory; needs the Docker engine.
bench-cluster: deps
	@bash hack/docker.sh
	$(PY) -m bench.cluster

up: deps
	@bash hack/up.sh

# A local cluster of node containers (3 etcd members, a control plane, 3 workers) named "kubelite";
# the context kubelite-kubelite is merged into ~/.kube/config. `make cluster-down` removes it.
cluster-up: deps
	@bash hack/docker.sh
	$(VENV)/bin/kubelite cluster up --name kubelite --workers 3

cluster-down: deps
	$(VENV)/bin/kubelite cluster down --name kubelite

down:
	@bash hack/down.sh

clean: down
	rm -rf _out
