-- The sequencer's plan no longer depends on the planner's statistics.
--
-- Each pass (every 250 ms on every node) looks for unsealed events from the transaction
-- horizon on: `xid >= low_xid` on the partial index audit_events_unsealed_idx, each candidate
-- checked against audit_chain's event index. With statistics that is a few index probes. Without
-- them (a new install, or a table that grew faster than autovacuum's analyze) the planner took
-- the default one-third selectivity for the xid range and chose parallel sequential scans of
-- both tables with a hash anti-join: measured 40 ms per pass over ~110k events with nothing to
-- seal, growing with the table; in the sensitive-read benchmark the sequencer then spent ~74 µs
-- per event instead of ~26. The plan shape it needs is always the same (the range is always
-- the recent tail), so the function fixes it: no sequential scan, hash or merge join, bitmap
-- scan or parallel workers. Measured on the same tables without statistics: 0.125 ms per pass.
-- JIT is off for the same reason: a seq-scan estimate was large enough to trigger compilation.
ALTER FUNCTION palisade.seal_audit_events(integer)
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_bitmapscan = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off;
