-- Deleting an organization (E6, crypto-shredding): its owner schedules it (after a step-up); it
-- can be cancelled during the grace period; then the key keeper's job destroys the
-- organization's wrapping keys in the key provider first (from then on no copy of its data,
-- backups included, can be decrypted) and then deletes its rows.
ALTER TABLE palisade.orgs
    ADD COLUMN deletion_due_at timestamptz,
    ADD COLUMN deletion_requested_by uuid REFERENCES palisade.users (id) ON DELETE SET NULL;

-- Organizations whose grace period has ended, with their wrapping keys' highest generation.
CREATE FUNCTION palisade.orgs_due_for_shredding(p_now timestamptz, p_max integer)
    RETURNS TABLE (tenant_id uuid, name text, generations integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT o.tenant_id, o.name,
           coalesce((SELECT max(substring(k.wrapping_key FROM '\.v([0-9]+)$')::integer)
                       FROM palisade.org_data_keys k WHERE k.tenant_id = o.tenant_id), 0)
      FROM palisade.orgs o
     WHERE o.deletion_due_at IS NOT NULL AND o.deletion_due_at <= p_now
     ORDER BY o.deletion_due_at LIMIT p_max
$$;
ALTER FUNCTION palisade.orgs_due_for_shredding(timestamptz, integer) OWNER TO palisade_keykeeper;

-- Deletes every row of an organization whose deletion is due (its wrapping keys are destroyed
-- by then), and notes it as an instance event. Refuses (PA403) an organization not due.
CREATE FUNCTION palisade.shred_org(p_org uuid, p_now timestamptz, p_event uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    o palisade.orgs%ROWTYPE;
    v_saved text[];
BEGIN
    v_saved := palisade.enter_for_keys(p_org);
    SELECT * INTO o FROM palisade.orgs WHERE tenant_id = p_org FOR UPDATE;
    IF NOT FOUND OR o.deletion_due_at IS NULL OR o.deletion_due_at > p_now THEN
        RAISE EXCEPTION 'the organization is not due for deletion' USING ERRCODE = 'PA403';
    END IF;
    DELETE FROM palisade.audit_checkpoints WHERE tenant_id = p_org;
    DELETE FROM palisade.audit_chain WHERE tenant_id = p_org;
    DELETE FROM palisade.audit_chain_heads WHERE tenant_id = p_org;
    DELETE FROM palisade.audit_events WHERE tenant_id = p_org;
    DELETE FROM palisade.records WHERE tenant_id = p_org;
    DELETE FROM palisade.orgs WHERE tenant_id = p_org;
    PERFORM palisade.leave_for_keys(v_saved);
    INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, target_id, outcome, details)
        VALUES (p_event, NULL, p_now, 'system', 'org.shredded', 'org', p_org, 'success',
                jsonb_build_object('name', o.name, 'requested_by', o.deletion_requested_by,
                                   'scheduled_for', o.deletion_due_at));
END
$$;
-- The key keeper deletes only inside shred_org, and only rows of the organization it entered.
GRANT DELETE ON palisade.audit_checkpoints, palisade.audit_chain, palisade.audit_chain_heads, palisade.audit_events,
    palisade.records, palisade.orgs, palisade.memberships, palisade.collections, palisade.collection_versions,
    palisade.custom_roles, palisade.invitations, palisade.api_keys, palisade.org_usage, palisade.secrets
    TO palisade_keykeeper;
GRANT SELECT ON palisade.audit_checkpoints, palisade.audit_chain, palisade.audit_chain_heads, palisade.audit_events,
    palisade.records, palisade.memberships, palisade.collections, palisade.collection_versions,
    palisade.custom_roles, palisade.invitations, palisade.api_keys, palisade.org_usage
    TO palisade_keykeeper;
GRANT UPDATE (deletion_due_at) ON palisade.orgs TO palisade_keykeeper;
ALTER FUNCTION palisade.shred_org(uuid, timestamptz, uuid) OWNER TO palisade_keykeeper;

-- Refuses (PADL1, a conflict) when the entered organization's deletion is already scheduled, so
-- a second request writes nothing (not even its audit event).
CREATE FUNCTION palisade.require_no_deletion_scheduled(p_org uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM palisade.orgs o WHERE o.tenant_id = p_org AND o.deletion_due_at IS NOT NULL) THEN
        RAISE EXCEPTION 'the organization''s deletion is already scheduled' USING ERRCODE = 'PADL1';
    END IF;
END
$$;
