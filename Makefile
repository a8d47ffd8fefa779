# Palisade developer commands. The real work is in scripts/, so CI and people run the same thing.
.PHONY: run test fmt
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
fmt:
	cargo fmt --all
