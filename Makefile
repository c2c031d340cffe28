# Two commands matter: `make run` (the mesh with its demo) and `make test` (the whole suite).
# Both build the one virtual environment at .venv with the project installed in it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard proto/referralmesh/v1/*.proto)
GENERATED := generated/referralmesh/v1/.stamp
INSTALLED := $(VENV)/.installed

.PHONY: run test unit lint check proto-lint proto-breaking proto-image proto venv kafka-start kafka-stop kafka-secure-start kafka-secure-stop pki clean bench-referral bench-region bench-e2e bench-e2e-profile bench-e2e-replicas bench-escalation bench-escalation-worker bench-notify k8s-check prometheus-rules-check chaos fuzz

run: $(INSTALLED)
	$(BIN)/mesh demo

test: $(INSTALLED)
	$(BIN)/python -m pytest

unit: $(INSTALLED)
	$(BIN)/python -m pytest tests/unit

venv: $(INSTALLED)

proto: $(GENERATED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Python code is generated from proto/ at build time and never edited by hand; mypy-protobuf's
# plugins write the typed stubs (.pyi) for the messages and the gRPC stubs beside it.
$(GENERATED): $(PROTOS) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $$(grep -oE '"(grpcio-tools|mypy-protobuf)==[^"]*"' pyproject.toml | tr -d '"')
	rm -rf generated && mkdir -p generated/referralmesh/v1
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=generated --grpc_python_out=generated \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=quiet:generated \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=quiet:generated $(PROTOS)
	touch generated/referralmesh/__init__.py generated/referralmesh/v1/__init__.py $@

$(INSTALLED): pyproject.toml $(GENERATED)
	$(BIN)/python -m pip install --quiet -e ".[test,check]"
	touch $@

# Benchmarks print their figures and write them to bench-results/*.json.
bench-region: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_region

bench-escalation: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_escalation

# The stall detector in the real region worker (Faust tables, changelogs, RocksDB) on a private
# broker: CASES open deadlines (100,000 by default; 1,000,000 for the issue-13 target).
bench-escalation-worker: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_escalation_worker $(if $(CASES),--cases $(CASES))

# bench-e2e finds the sustained rate (benchmarks/README.md); DATABASE=postgres puts the referral
# and notify stores on PostgreSQL (default: their embedded SQLite); REPLICAS=N runs N replicas of each
# service; bench-e2e-replicas prints 1 and 2 side by side; bench-e2e-profile attaches py-spy to
# every service during one step (flame graphs in bench-results/profiles/).
bench-e2e: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_e2e $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(DATABASE),--database $(DATABASE))

bench-e2e-profile: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_e2e --profile $(if $(RATE),--profile-rate $(RATE))

bench-e2e-replicas: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_e2e --compare-replicas

bench-referral: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_referral

# The notify worker alone: events/s and its CPU per event, SQLite and PostgreSQL (NOTIFY_ARGS=--profile).
bench-notify: $(INSTALLED)
	$(BIN)/python -m benchmarks.bench_notify $(NOTIFY_ARGS)

# Faults under load and hostile input, each on a private broker (and PostgreSQL) of its own;
# both print one summary line and write bench-results/{chaos,fuzz}.json (README.md, "Faults and hostile input").
chaos: $(INSTALLED)
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

fuzz: $(INSTALLED)
	$(BIN)/python -m benchmarks.fuzz $(FUZZ_ARGS)

# A local certificate authority, CRL and one certificate per agency, for demo and tests.
pki: $(INSTALLED)
	$(BIN)/mesh pki init var/pki

# Renders deploy/k8s (every overlay) and validates it offline: Kubernetes and operator schemas,
# a checkov security scan (deploy/k8s/README.md). Tools at pinned versions in .cache/tools.
TOOLS := .cache/tools
KUSTOMIZE_VERSION := v5.8.2
KUSTOMIZE := $(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
K8S_CHECK_VENV := $(TOOLS)/k8s-check

k8s-check: $(KUSTOMIZE) $(K8S_CHECK_VENV)/.installed
	$(K8S_CHECK_VENV)/bin/python deploy/k8s/check.py --kustomize $(KUSTOMIZE)

$(KUSTOMIZE):
	GOBIN="$(abspath $(dir $@))" GOTOOLCHAIN=local go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(K8S_CHECK_VENV)/.installed: deploy/k8s/check-requirements.txt
	$(PYTHON) -m venv $(K8S_CHECK_VENV)
	$(K8S_CHECK_VENV)/bin/python -m pip install --quiet -r deploy/k8s/check-requirements.txt
	touch $@

# `make lint`: ruff, mypy, buf lint and buf breaking. `make check`: lint, the formatting check,
# k8s-check and prometheus-rules-check; CI runs it before the tests; .pre-commit-config.yaml runs the same on commit.
# buf comes as the prebuilt binary that its npm package ships (@bufbuild/buf-linux-x64 and
# friends): building it with `go install` took from minutes to most of an hour on a fresh
# 2-core machine with an empty Go build cache.
BUF_VERSION := 1.75.0
BUF_DIR := $(TOOLS)/buf-$(BUF_VERSION)
BUF := $(BUF_DIR)/node_modules/.bin/buf

lint: $(INSTALLED) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(MAKE) --no-print-directory proto-lint proto-breaking

check: lint k8s-check prometheus-rules-check
	$(BIN)/ruff format --check .

# The operators' Prometheus alerting rules (deploy/prometheus): `promtool check rules` and every
# rule's unit test (`promtool test rules`), part of `make check`. promtool comes from Debian's
# prometheus package, unpacked into .cache/tools and not installed (installing would also set up
# a Prometheus server); building it with `go install` took from a quarter of an hour to over an
# hour on a fresh 2-core machine.
PROMTOOL_DIR := $(TOOLS)/promtool-debian
PROMTOOL := $(PROMTOOL_DIR)/usr/bin/promtool

prometheus-rules-check: $(PROMTOOL)
	$(PROMTOOL) --version 2>&1 | sed -n 1p
	$(PROMTOOL) check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && $(abspath $(PROMTOOL)) test rules alerts.test.yaml

$(PROMTOOL):
	rm -rf $(PROMTOOL_DIR) && mkdir -p $(PROMTOOL_DIR)
	cd $(PROMTOOL_DIR) && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x $(PROMTOOL_DIR)/prometheus_*.deb $(PROMTOOL_DIR)
	touch $@

proto-lint: $(BUF)
	$(BUF) lint

# A wire- or source-incompatible change to proto/ against the last released contract fails here
# (proto/README.md: the versioning policy); a self-test shows that a changed tag number is caught.
proto-breaking: $(BUF)
	BUF=$(BUF) scripts/proto-breaking.sh

# Only when a contract release is cut: the image proto-breaking falls back to without the tag.
proto-image: $(BUF)
	$(BUF) build proto -o proto/contracts-v1.binpb

$(BUF):
	npm install --silent --no-audit --no-fund --no-save --prefix "$(abspath $(BUF_DIR))" @bufbuild/buf@$(BUF_VERSION)
	$(BUF) --version

kafka-start:
	scripts/kafka.sh start

kafka-stop:
	scripts/kafka.sh stop

# A second, secured broker (TLS, SASL/SCRAM, ACLs) on 9192: README "Kafka credentials and ACLs".
kafka-secure-start: $(INSTALLED)
	SECURE=1 scripts/kafka.sh start

kafka-secure-stop:
	SECURE=1 scripts/kafka.sh stop

clean:
	rm -rf $(VENV) generated var .pytest_cache
