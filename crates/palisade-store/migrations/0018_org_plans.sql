-- Plan tiers: an organization's plan decides its members' and keys' request budgets (rate
-- limits). Only an instance administrator changes it.
ALTER TABLE palisade.orgs
    ADD COLUMN plan text NOT NULL DEFAULT 'standard' CHECK (plan IN ('standard', 'professional', 'enterprise'));

-- The plan of an organization, for the rate limiter (which runs before any session is checked);
-- unknown organizations answer 'standard'. It reveals a tier, nothing else.
CREATE FUNCTION palisade.org_plan(p_org uuid) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_plan text;
BEGIN
    PERFORM set_config('app.tenant_id', p_org::text, true);
    SELECT o.plan INTO v_plan FROM palisade.orgs o WHERE o.tenant_id = p_org;
    PERFORM set_config('app.tenant_id', '', true);
    RETURN coalesce(v_plan, 'standard');
END
$$;

-- Sets an organization's plan. The caller (after enter_session) must be an instance
-- administrator (PA403); an unknown organization raises PA404. Leaves the tenant set to p_org so
-- the same transaction can write the organization's audit event.
CREATE FUNCTION palisade.set_org_plan(p_org uuid, p_plan text, p_now timestamptz) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_old text;
BEGIN
    IF NOT coalesce((SELECT u.is_instance_admin FROM palisade.users u WHERE u.id = palisade.current_user_id()), false) THEN
        RAISE EXCEPTION 'only an instance administrator sets plans' USING ERRCODE = 'PA403';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    SELECT o.plan INTO v_old FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    UPDATE palisade.orgs SET plan = p_plan, updated_at = p_now WHERE tenant_id = p_org;
    RETURN v_old;
END
$$;
