-- The organizations whose deletion is due, found through an index instead of a walk over every
-- organization.
--
-- The key keeper asks every 10 s on every node (orgs_due_for_shredding, 0023). Without an index
-- on deletion_due_at the answer read the whole orgs table: 8–12 ms per call with 100,000
-- organizations and none being deleted, growing with the instance; 0.3 ms with the index. A
-- partial index holds only the organizations scheduled for deletion (few at any time), in due
-- order; the function reads it oldest first and stops at its limit. Its plan is fixed as the sequencer's and the other
-- key keeper queries' are (0031-0033): cost follows the deletions there are, not the table or
-- its statistics. Same answers as before.
CREATE INDEX orgs_deletion_due_idx ON palisade.orgs (deletion_due_at) WHERE deletion_due_at IS NOT NULL;

ALTER FUNCTION palisade.orgs_due_for_shredding(timestamptz, integer)
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off;
