# pkgcache.overlay: the two commands the README documents are `make demo`
# and `make test`. Both install what they need (scripts/bootstrap.sh).
SCENARIOS ?= default default@trixie refresh ecosystems shards attacks
# The Python tools live in a venv (scripts/venv.sh): Debian 12's system pip refuses installs.
export PATH := $(CURDIR)/.cache/venv/bin:$(PATH)
# ansible-core 2.19's ssh-agent client imports cryptography's DSA names, and the venv's cryptography warns about
# it on every ansible command ("CryptographyDeprecationWarning: DSA is deprecated ..."). That one warning is
# filtered for what this Makefile starts (demo/run.sh does the same); users' environments are left alone.
comma := ,
export PYTHONWARNINGS := $(if $(PYTHONWARNINGS),$(PYTHONWARNINGS)$(comma))ignore:DSA is deprecated

.PHONY: test demo demo-clean bootstrap venv-check unit lint sanity package molecule bench

# The checks and the scenarios in two lanes side by side (scripts/test.sh; PKGCACHE_LANES=serial for one lane).
test: bootstrap
	bash scripts/test.sh

bootstrap:
	bash scripts/bootstrap.sh

# scripts/venv.sh on a stock Debian 12 (the bookworm test image, Debian's own Python and pip).
venv-check:
	bash scripts/venv-check.sh

unit:
	python3 -m pytest -p no:cacheprovider tests/unit

sanity:
	bash scripts/sanity.sh

# ansible-lint's production profile (.ansible-lint), the changelog fragments, and the alert rules (promtool).
lint:
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.cache/collections ansible-lint
	antsibull-changelog lint
	cd extras/prometheus && promtool check rules pkgcache.rules.yml && promtool test rules pkgcache.rules.test.yml

# Build the tarball, check its file list, install it and syntax-check every playbook against the example inventory.
package:
	bash scripts/package.sh

molecule:
	bash scripts/molecule.sh $(SCENARIOS)

demo:
	bash demo/run.sh

demo-clean:
	docker rm -f pkgcache-demo-builder pkgcache-demo-repl1 pkgcache-demo-repl2
	docker volume rm pkgcache-demo-repl1-scratch pkgcache-demo-repl2-scratch

# Benchmarks (not tests): tables and plots in bench/results/. BENCH_ARGS, e.g. --rounds 5 --users 100.
BENCH_ARGS ?=
bench: bootstrap
	python3 -m pip install -q --disable-pip-version-check matplotlib
	python3 bench/run.py $(BENCH_ARGS)
