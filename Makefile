# jincai: the two commands are `make site` (lab WAN up + provision + verify) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# ansible.cfg names no vault password file (AWX brings its own): the lab's targets use the lab's.
export ANSIBLE_VAULT_IDENTITY_LIST ?= lab@$(CURDIR)/inventories/lab/vault-pass.sh
APT_PACKAGES := python3 python3-venv python3-dev gcc make git debootstrap systemd-container \
	iproute2 iptables nftables openssh-client sshpass rsync ca-certificates curl iputils-ping procps sudo \
	chromium fonts-wqy-microhei graphviz

.PHONY: help deps apt venv lint unit lab-up lab-down lab-test test-slow site test clean bench province test-province

help:
	@echo "make site   - bring up the lab WAN, provision it end to end, verify, print a summary"
	@echo "make test   - install deps, lint, unit tests, lab integration tests (what CI runs)"
	@echo "make test-slow - the long end-to-end proofs (county bootstrap from blank, kill and resume)"
	@echo "make province - the province twin of inventories/jilin: up, provision, verify, summary"
	@echo "make test-province - the twin proofs (converge, idempotency, check mode, flows, link cuts)"
	@echo "make bench  - benchmarks (print figures)"
	@echo "make lab-down - remove the lab completely"

deps: apt venv

apt: .stamp-apt
.stamp-apt: Makefile
	@if [ "$$(id -u)" != 0 ]; then echo "jincai: run as root (the lab needs namespaces and systemd-nspawn)" >&2; exit 1; fi
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "== apt: installing $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt pyproject.toml
	@echo "== virtualenv $(VENV) from requirements.txt"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip==24.3.1
	@$(PY) -m pip install -q -r requirements.txt
	@$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	@touch $@

lint: venv
	@echo "== yamllint"; yamllint -s .
	@echo "== ansible-lint (production profile)"; ansible-lint --offline -q
	@echo "== syntax check"; for p in playbooks/*.yml; do ansible-playbook --syntax-check -i inventories/lab "$$p" >/dev/null || exit 1; done; echo "playbooks OK"

unit: venv
	@echo "== unit tests"; $(PY) -m pytest -q -p no:cacheprovider -n 2 tests/unit

lab-up: deps
	jincai lab up -i inventories/lab

lab-down: venv
	jincai lab down

PYTEST := $(PY) -m pytest -q -p no:cacheprovider -rfE --durations=40
# The lab suite runs in phases on a freshly booted lab:
#   1. fresh:     the bare lab (links, isolation) before anything is provisioned;
#   2. provision: tests/lab/test_00_site.py runs site.yml, then proves changed=0 and a clean --check;
#   3. the role, routing, VPN, app and compliance tests on the provisioned lab;
#   3b. slow: a blank county bootstrapped onto that WAN (same pytest session, so the WAN site.yml
#       provisioned is reused; the slow tests are ordered after all others: they attach and remove hosts);
#   4. lifecycle: down/up leave nothing behind (last, it reboots the lab).
# The lab suite runs without the ARA audit callback (ansible.cfg enables it for operators): with ARA's
# own offline client it cost ~25 ms of control-node CPU per task result, minutes over the suite on two
# cores; jincai_ara's journal (the default now, docs/audit.md) moves that work into an importer
# process after each run, which still takes ~10 ms of CPU per result on the same two cores.
# tests/lab/test_audit_lab.py turns it on for its own runs. jincai_manifest stays on: site.yml's last play
# records each host's manifest, which `jincai compliance --drift fast` compares with (docs/compliance.md).
lab-test test-slow: export ANSIBLE_CALLBACKS_ENABLED = jincai_timer,jincai_manifest
lab-test: deps
	jincai lab down
	jincai lab up -i inventories/lab
	@echo "== lab phase 1: fresh lab"; $(PYTEST) -m "lab and fresh" tests/lab || test $$? = 5
	@echo "== lab phases 2, 3 and 3b: provision, verify, then a county bootstrapped from blank"; \
	  $(PYTEST) -m "lab and not fresh and not lifecycle and not long" tests/lab
	@echo "== lab phase 4: lifecycle"; $(PYTEST) -m "lab and lifecycle" tests/lab || test $$? = 5

# Only the county bootstrap proofs (blank county, bad input, second run, kill and resume: ~10 min);
# they provision the lab WAN first (site.yml) when it is not.
test-slow: deps
	jincai lab up -i inventories/lab
	$(PYTEST) -m "slow" tests/lab

site: deps
	$(PY) -m jincai.site_run

# The province twin (docs/lab.md): 172 hosts and 223 party namespaces derived from inventories/jilin.
# Not part of `make test`/CI (first provisioning takes tens of minutes on two cores).
TWIN_OF ?= inventories/jilin
province: deps
	$(PY) -m jincai.site_run --twin $(TWIN_OF)

test-province: deps
	jincai lab up --twin $(TWIN_OF)
	$(PYTEST) -s tests/province

test: deps lint unit lab-test

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: lab-down
	rm -rf $(VENV) .stamp-apt
