-- Deleting an organization (E6, crypto-shredding): its owner schedules it (after a step-up); it
-- can be cancelled during the grace period; then the key keeper's job destroys the
-- organization's wrapping keys in the key provider first (from then on no copy of its data,
-- backups included, can be decrypted) and then deletes its rows.
ALTER TABLE palisade.orgs
    ADD COLUMN deletion_due_at timestamptz,
    ADD COLUMN deletion_requested_by uuid REFERENCES palisade.users (id) ON DELETE SET NULL,
    -- Set when the job claims the organization, before it destroys any key: from then on the
    -- deletion can no longer be cancelled (a cancel after the keys are gone would leave an
    -- organization whose data nobody can decrypt).
    ADD COLUMN shredding_started_at timestamptz,
    -- The database's clock when the owner asked; the grace period runs from here.
    ADD COLUMN deletion_requested_at timestamptz;

-- Organizations whose grace period has ended, with their wrapping keys' highest generation.
CREATE FUNCTION palisade.orgs_due_for_shredding(p_now timestamptz, p_max integer)
    RETURNS TABLE (tenant_id uuid, name text, generations integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT o.tenant_id, o.name,
           coalesce((SELECT max(substring(k.wrapping_key FROM '\.v([0-9]+)$')::integer)
                       FROM palisade.org_data_keys k WHERE k.tenant_id = o.tenant_id), 0)
      FROM palisade.orgs o
     WHERE o.deletion_due_at IS NOT NULL AND (o.deletion_due_at <= p_now OR o.shredding_started_at IS NOT NULL)
     ORDER BY o.deletion_due_at LIMIT p_max
$$;
ALTER FUNCTION palisade.orgs_due_for_shredding(timestamptz, integer) OWNER TO palisade_keykeeper;

-- Claims an organization whose deletion is due for shredding (no cancel after this). Refuses
-- (PA403) one not due, under legal hold, or a time ahead of the database clock (the grace period
-- cannot be skipped by passing a future time).
CREATE FUNCTION palisade.begin_shredding(p_org uuid, p_now timestamptz) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_saved text[];
BEGIN
    IF p_now > now() + interval '5 minutes' THEN
        RAISE EXCEPTION 'the shredding time is ahead of the database clock' USING ERRCODE = 'PA403';
    END IF;
    v_saved := palisade.enter_for_keys(p_org);
    UPDATE palisade.orgs o SET shredding_started_at = coalesce(o.shredding_started_at, p_now)
     WHERE o.tenant_id = p_org AND o.deletion_due_at IS NOT NULL AND o.deletion_due_at <= p_now
       AND o.deletion_due_at <= now() AND NOT o.legal_hold;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the organization is not due for deletion (or under legal hold)' USING ERRCODE = 'PA403';
    END IF;
    PERFORM palisade.leave_for_keys(v_saved);
END
$$;
ALTER FUNCTION palisade.begin_shredding(uuid, timestamptz) OWNER TO palisade_keykeeper;
GRANT UPDATE (shredding_started_at) ON palisade.orgs TO palisade_keykeeper;

-- Deletes every row of an organization claimed by begin_shredding (its wrapping keys are
-- destroyed by then), and notes it as an instance event. Refuses (PA403) one not claimed.
CREATE FUNCTION palisade.shred_org(p_org uuid, p_now timestamptz, p_event uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    o palisade.orgs%ROWTYPE;
    v_saved text[];
BEGIN
    v_saved := palisade.enter_for_keys(p_org);
    SELECT * INTO o FROM palisade.orgs WHERE tenant_id = p_org FOR UPDATE;
    IF NOT FOUND OR o.shredding_started_at IS NULL OR o.legal_hold THEN
        RAISE EXCEPTION 'the organization is not being shredded' USING ERRCODE = 'PA403';
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

-- Schedules the entered organization's deletion (its owner, checked here as well as by the
-- caller's transaction) for the database's clock plus p_grace, never less than a day: the server
-- role cannot set or move these columns itself, so no one skips the grace period through it.
-- Refuses PADL1 (a conflict) when one is already scheduled, PA403 for a non-owner.
CREATE FUNCTION palisade.schedule_org_deletion(p_org uuid, p_grace interval) RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_due timestamptz;
BEGIN
    IF p_org IS DISTINCT FROM nullif(current_setting('app.tenant_id', true), '')::uuid
       OR current_setting('app.role', true) IS DISTINCT FROM 'owner' THEN
        RAISE EXCEPTION 'only an owner schedules the deletion' USING ERRCODE = 'PA403';
    END IF;
    IF EXISTS (SELECT 1 FROM palisade.orgs o WHERE o.tenant_id = p_org AND o.deletion_due_at IS NOT NULL) THEN
        RAISE EXCEPTION 'the organization''s deletion is already scheduled' USING ERRCODE = 'PADL1';
    END IF;
    UPDATE palisade.orgs o SET deletion_requested_at = now(), deletion_due_at = now() + greatest(p_grace, interval '1 day'),
           deletion_requested_by = palisade.current_user_id()
     WHERE o.tenant_id = p_org
    RETURNING o.deletion_due_at INTO v_due;
    RETURN v_due;
END
$$;
ALTER FUNCTION palisade.schedule_org_deletion(uuid, interval) OWNER TO palisade_keykeeper;

-- Cancels the entered organization's scheduled deletion (its owner) unless the job has started
-- it; PA404 when there is nothing to cancel.
CREATE FUNCTION palisade.cancel_org_deletion(p_org uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    IF p_org IS DISTINCT FROM nullif(current_setting('app.tenant_id', true), '')::uuid
       OR current_setting('app.role', true) IS DISTINCT FROM 'owner' THEN
        RAISE EXCEPTION 'only an owner cancels the deletion' USING ERRCODE = 'PA403';
    END IF;
    UPDATE palisade.orgs o SET deletion_due_at = NULL, deletion_requested_at = NULL, deletion_requested_by = NULL
     WHERE o.tenant_id = p_org AND o.deletion_due_at IS NOT NULL AND o.shredding_started_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no deletion to cancel' USING ERRCODE = 'PA404';
    END IF;
END
$$;
ALTER FUNCTION palisade.cancel_org_deletion(uuid) OWNER TO palisade_keykeeper;
GRANT UPDATE (deletion_due_at, deletion_requested_at, deletion_requested_by) ON palisade.orgs TO palisade_keykeeper;
GRANT EXECUTE ON FUNCTION palisade.current_user_id() TO palisade_keykeeper;
