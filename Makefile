# Palisade developer commands. The real work is in scripts/, so CI and people run the same thing.
.PHONY: run test fmt bench bench-quick
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
fmt:
	cargo fmt --all
# The benchmark suite (bench/README.md): release build, embedded PostgreSQL, wrk and pgbench over
# loopback. Full: bench/results/latest.{json,md}, < 15 min on 2 cores. Quick: quick.{json,md}, < 3 min.
bench:
	bash bench/run.sh full
bench-quick:
	bash bench/run.sh quick
