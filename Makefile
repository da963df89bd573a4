# llmops.ollama: the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
HOSTS ?= 3
PYTEST_ARGS ?=
# ansible-core releases tested at once (tests/lab/matrix.py --jobs)
MATRIX_JOBS ?= 3
# the main release's unit, lab and integration tests (make test runs them beside the fleet, main-release before it)
UNIT_AND_INTEGRATION = tests/lab/timed.sh unit+integration $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/unit tests/lab tests/integration

.PHONY: deps demo lab-up lab-down test unit integration fleet main-release checks on-fleet molecule sanity lint ecosystem docs build bench matrix

deps:                 ## install what the lab and the tests need (apt, pip; Go and npm from the machine)
	@tests/lab/deps.sh

demo: deps            ## boot the lab fleet, run the site playbook on it, print the fleet report
	$(PYTHON) -m tests.lab demo --hosts $(HOSTS)

lab-up: deps
	$(PYTHON) -m tests.lab up --hosts $(HOSTS)

lab-down:
	$(PYTHON) -m tests.lab down

test: deps            ## everything CI runs: set-up, then the fleet tests and Molecule, with the other ansible-cores, the unit and integration tests and the static checks beside them
	tests/lab/timed.sh set-up $(PYTHON) -m tests.lab prepare --hosts 6
	tests/lab/alongside.sh \
	  .lab/matrix.out "tests/lab/timed.sh matrix $(PYTHON) -m tests.lab.matrix --jobs $(MATRIX_JOBS)" \
	  .lab/integration.out "$(UNIT_AND_INTEGRATION)" \
	  .lab/checks.out "$(MAKE) --no-print-directory checks" \
	  -- $(MAKE) --no-print-directory on-fleet

main-release:         ## everything make test runs on the main ansible-core, one part after the other
	$(UNIT_AND_INTEGRATION)
	$(MAKE) --no-print-directory checks
	$(MAKE) --no-print-directory on-fleet

checks:               ## sanity, ansible-lint and the ecosystem's tools (main ansible-core)
	tests/lab/timed.sh sanity tests/sanity/run.sh
	tests/lab/timed.sh ansible-lint ansible-lint
	tests/lab/timed.sh ecosystem tests/ecosystem/run.sh

on-fleet:             ## the fleet tests and Molecule, on the lab fleet (main ansible-core)
	tests/lab/timed.sh fleet $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/fleet
	-molecule reset --all >/dev/null 2>&1  # forget a previous run's state (a fleet that is gone), if any
	tests/lab/timed.sh molecule molecule test --all

matrix:               ## sanity, unit and integration tests on every other ansible-core release the collection claims
	$(PYTHON) -m tests.lab.matrix

unit:                 ## the unit tests with pytest (tests/ecosystem/units.sh runs them with ansible-test units), and the lab's own
	$(PYTHON) -m pytest -q tests/unit tests/lab

integration:
	$(PYTHON) -m pytest -q tests/integration

fleet:
	$(PYTHON) -m pytest -q tests/fleet

molecule:             ## each role's Molecule scenario on the lab fleet (extensions/molecule: boots and stops the lab)
	-molecule reset --all >/dev/null 2>&1  # forget a previous run's state (a fleet that is gone), if any
	molecule test --all

sanity:
	tests/sanity/run.sh

lint:
	ansible-lint

ecosystem:            ## the tarball through galaxy-importer, the docsite, changelog, extra checks, ansible-builder
	tests/ecosystem/run.sh

docs:                 ## docs/docsite/rst/ from docs/*.md, CHANGELOG.md from changelogs/
	tests/ecosystem/run.sh docs

build:                ## the collection tarball
	ansible-galaxy collection build --force --output-path .lab/
