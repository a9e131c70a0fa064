# The two commands of the README:
#   make local   set up everything, start the local cluster, run train.yml on inventories/local
#   make test    set up everything, lint, and run the unit, integration and Molecule tests
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: bootstrap local cluster down lint test test-unit molecule

bootstrap:
	scripts/bootstrap-host

cluster: bootstrap
	localcluster/localcluster up

local: cluster
	$(VENV)/ansible-playbook train.yml -i inventories/local

down:
	localcluster/localcluster down

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy plugins/module_utils
	$(VENV)/yamllint -s .
	$(VENV)/ansible-lint --profile production -q

test-unit: bootstrap
	$(VENV)/pytest tests/unit -q

# Lint first, then Molecule (brings the cluster up and down itself, or reuses a running one),
# then pytest last, so the command ends with pytest's summary line.
test: lint
	scripts/run-tests
