# harborfleet.fleet: one entry point for set-up, the lab, tests, the demo and the benchmark.
#   make test    set everything up from nothing, start the lab, run every check, stop the lab
#   make demo    set up, start the lab and deploy the lab fleet
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
BIN         := $(CURDIR)/$(VENV)/bin
PY          := $(BIN)/python
BUILD       := $(CURDIR)/.build
COLLECTIONS := $(BUILD)/collections
LAB         := $(PY) lab/lab.py
PYTEST_ARGS ?=
N           ?= 100

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export HARBORFLEET_LAB_DIR ?= $(CURDIR)/.lab
# Everything run from here talks to the lab's cluster (the inventory plugin reads placement there).
export K8S_AUTH_KUBECONFIG := $(HARBORFLEET_LAB_DIR)/kube/kubeconfig

.PHONY: help setup system-deps venv collection go-build lab-up lab-down lab-status \
        test check sanity lint package ee unit integration molecule demo bench bench-smoke build clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: system-deps venv collection go-build ## everything the lab and tests need (idempotent)

system-deps: ## Debian packages: PostgreSQL 15, Redis + Sentinel, openssl, curl
	@tools/install-system-deps

venv: $(VENV)/.installed ## Python venv with ansible-core 2.19 and the test tools
$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

collection: venv ## expose the checkout as ansible_collections/harborfleet/fleet
	@mkdir -p $(COLLECTIONS)/ansible_collections/harborfleet
	@ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/harborfleet/fleet

go-build: venv ## build kube-apiserver + etcd once per version (cached per user, outside the checkout)
	@$(LAB) build >/dev/null

lab-up: setup ## start the lab (idempotent; LAB_PROFILE=regions adds a second region); prints where things are
	@$(LAB) up $(if $(LAB_PROFILE),--profile $(LAB_PROFILE))

lab-down: ## stop every lab process by PID and delete lab data
	@if [ -x $(PY) ]; then $(LAB) down; else python3 lab/lab.py down; fi

lab-status: ## one line per lab service
	@$(LAB) status

test: setup ## the whole suite from nothing: lab up (both regions), sanity, lint, unit, integration, molecule, bench smoke, lab down
	@$(LAB) up --profile regions && { $(MAKE) --no-print-directory check; rc=$$?; $(LAB) down; exit $$rc; }

check: sanity lint package ee unit integration molecule bench-smoke

sanity: collection ## ansible-test sanity
	tools/sanity

lint: venv ## ansible-lint, production profile
	ansible-lint --profile production

unit: collection ## unit tests
	pytest tests/unit $(PYTEST_ARGS)

integration: collection ## integration tests against the running lab
	@$(LAB) fleets
	pytest tests/integration $(PYTEST_ARGS)

molecule: collection ## molecule scenarios against the running lab
	@$(LAB) fleets
	@for s in $$(ls molecule 2>/dev/null); do \
	  [ -f molecule/$$s/molecule.yml ] || continue; \
	  if [ $$s = regions ] && ! grep -q '"LAB_PROFILE": "regions"' $(HARBORFLEET_LAB_DIR)/env.json; then \
	    echo "== molecule test -s regions: skipped, the lab runs one region (make lab-up LAB_PROFILE=regions)"; \
	    continue; fi; \
	  echo "== molecule test -s $$s"; molecule test -s $$s || exit 1; \
	done

demo: lab-up ## set up, start the lab, deploy the 3-tenant lab fleet, print its status and the HTML report's path
	ansible-playbook -i inventories/lab playbooks/deploy_fleet.yml
	ansible-playbook -i inventories/lab playbooks/fleet_status.yml

bench: lab-up ## the fleet benchmark (N=10,100,1000 PHASES=provision,noop,credentials PATHS=naive,fleet,floor NAIVE_MAX=100 BENCH_ARGS=...)
	@$(PY) benchmarks/bench.py --n "$(N)" $(if $(PHASES),--phases "$(PHASES)") $(if $(PATHS),--paths "$(PATHS)") \
	  $(if $(NAIVE_MAX),--naive-max "$(NAIVE_MAX)") $(BENCH_ARGS)

bench-smoke: collection ## the benchmark at N=10 against the running lab: it runs to the end (no time is asserted)
	@$(PY) benchmarks/bench.py --n 10 --credentials-max 10 --inventory 100 --results $(BUILD)/bench-smoke

build: venv ## build the collection tarball into .build/
	ansible-galaxy collection build --force --output-path $(BUILD)

package: build ## the built tarball installs and its modules document themselves
	rm -rf $(BUILD)/installed
	ansible-galaxy collection install --force -p $(BUILD)/installed $(BUILD)/harborfleet-fleet-*.tar.gz
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/installed ansible-doc -l harborfleet.fleet | grep -q tenant_database

ee: build ## the execution environment's build context (ansible-builder create), from the built tarball
	rm -rf $(BUILD)/ee
	ansible-builder create -f execution-environment.yml -c $(BUILD)/ee >/dev/null
	grep -q 'harborfleet-fleet.tar.gz' $(BUILD)/ee/_build/requirements.yml
	ls $(BUILD)/ee/_build/collections/harborfleet-fleet-*.tar.gz >/dev/null

clean: lab-down ## remove build trees (keeps the venv and the Go binary cache)
	rm -rf $(BUILD) tests/output
