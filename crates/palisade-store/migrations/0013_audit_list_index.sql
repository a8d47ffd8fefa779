-- Listing and exporting the audit log page through (occurred_at, id), newest first: one index
-- serves that keyset exactly (the one it replaces stopped at occurred_at).
DROP INDEX palisade.audit_events_tenant_time_idx;
CREATE INDEX audit_events_tenant_time_idx ON palisade.audit_events (tenant_id, occurred_at, id);
