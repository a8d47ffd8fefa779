-- Listing "my organizations" without a second policy on orgs: a second (OR-ed) policy put a
-- SubPlan over memberships into every tenant-scoped read of orgs. Instead, this function enters
-- each of the caller's tenants in turn, so every row still passes the tenant policy, even for an
-- owner role that row-level security is forced on.
DROP POLICY member_can_list ON palisade.orgs;

CREATE FUNCTION palisade.my_orgs()
    RETURNS TABLE (tenant_id uuid, name text, created_at timestamptz, updated_at timestamptz, role text,
                   session_idle_seconds float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    m record;
    v_prior text := coalesce(current_setting('app.tenant_id', true), '');
BEGIN
    IF palisade.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    FOR m IN SELECT mm.tenant_id, mm.role FROM palisade.memberships mm
              WHERE mm.user_id = palisade.current_user_id() LOOP
        PERFORM set_config('app.tenant_id', m.tenant_id::text, true);
        RETURN QUERY
            SELECT o.tenant_id, o.name, o.created_at, o.updated_at, m.role,
                   extract(epoch FROM o.session_idle_timeout)::float8
              FROM palisade.orgs o WHERE o.tenant_id = m.tenant_id;
    END LOOP;
    PERFORM set_config('app.tenant_id', v_prior, true);
END
$$;
