# Palisade developer commands. The real work is in scripts/, so CI and people run the same thing.
.PHONY: run test fmt bench bench-quick reliability reliability-quick
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
# The reliability and attack suite (reliability/README.md): schemathesis, cross-tenant probe of
# every route, crash, disk full, clock faults, brute force, cargo-fuzz, supply chain, held load.
# Full: reliability/results/latest.{json,md}, < 45 min. Quick (part of make test): quick.{json,md}.
reliability:
	bash reliability/run.sh full
reliability-quick:
	bash reliability/run.sh quick
