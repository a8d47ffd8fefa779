-- Per-organization record and byte quotas. Usage is counted in 16 shards per organization (a
-- record always counts in the shard its id hashes to), so writers of one organization rarely
-- wait on the same counter row. The check before an insert reads the sum: concurrent inserts
-- may pass it together, so a quota can be overshot by at most the number of concurrent writers.
CREATE TABLE palisade.org_usage (
    tenant_id uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    shard     smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    records   bigint NOT NULL DEFAULT 0,
    bytes     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, shard)
);
ALTER TABLE palisade.org_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.org_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.org_usage
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

INSERT INTO palisade.org_usage (tenant_id, shard, records, bytes)
SELECT tenant_id, (hashtext(id::text) & 15)::smallint, count(*), sum(pg_column_size(data))
  FROM palisade.records GROUP BY 1, 2;

-- Keeps the counters: runs as the table owner, so the server role cannot edit its usage.
CREATE FUNCTION palisade.count_record_usage() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO palisade.org_usage AS u (tenant_id, shard, records, bytes)
        VALUES (OLD.tenant_id, (hashtext(OLD.id::text) & 15)::smallint, -1, -pg_column_size(OLD.data))
        ON CONFLICT (tenant_id, shard) DO UPDATE SET records = u.records + excluded.records, bytes = u.bytes + excluded.bytes;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO palisade.org_usage AS u (tenant_id, shard, records, bytes)
        VALUES (NEW.tenant_id, (hashtext(NEW.id::text) & 15)::smallint, 1, pg_column_size(NEW.data))
        ON CONFLICT (tenant_id, shard) DO UPDATE SET records = u.records + excluded.records, bytes = u.bytes + excluded.bytes;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER records_usage AFTER INSERT OR DELETE OR UPDATE OF data ON palisade.records
    FOR EACH ROW EXECUTE FUNCTION palisade.count_record_usage();

-- Fails (PAQ02) when one more record of p_new_bytes would pass the organization's quotas.
CREATE FUNCTION palisade.require_record_quota(p_records bigint, p_bytes bigint, p_new_bytes bigint) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_records bigint;
    v_bytes bigint;
BEGIN
    SELECT coalesce(sum(u.records), 0), coalesce(sum(u.bytes), 0) INTO v_records, v_bytes
      FROM palisade.org_usage u WHERE u.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid;
    IF v_records + 1 > p_records OR v_bytes + p_new_bytes > p_bytes THEN
        RAISE EXCEPTION 'record quota reached' USING ERRCODE = 'PAQ02';
    END IF;
END
$$;
