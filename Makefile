# pkgcache.overlay: the two commands the README documents are `make demo`
# and `make test`. Both install what they need (scripts/bootstrap.sh).
SCENARIOS ?= default refresh

.PHONY: test demo demo-clean bootstrap unit sanity molecule

test: bootstrap unit sanity molecule

bootstrap:
	bash scripts/bootstrap.sh

unit:
	python3 -m pytest -p no:cacheprovider tests/unit

sanity:
	bash scripts/sanity.sh

molecule:
	bash scripts/molecule.sh $(SCENARIOS)

demo:
	bash demo/run.sh

demo-clean:
	docker rm -f pkgcache-demo-builder pkgcache-demo-repl1 pkgcache-demo-repl2
	docker volume rm pkgcache-demo-repl1-scratch pkgcache-demo-repl2-scratch
