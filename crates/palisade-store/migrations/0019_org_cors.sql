-- Cross-origin access: the browser origins an organization allows to call its API routes
-- (CORS). Empty: none (the default). Read with the plan by the node's edge (rate limits, CORS).
ALTER TABLE palisade.orgs ADD COLUMN cors_origins text[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(cors_origins) <= 20);

DROP FUNCTION palisade.org_plan(uuid);

-- What a node needs to know about an organization before any session is checked: its plan
-- (request budgets) and allowed origins (CORS). Unknown organizations: standard, none. Reveals
-- nothing a browser could not learn by trying.
CREATE FUNCTION palisade.org_edge_settings(p_org uuid) RETURNS TABLE (plan text, cors_origins text[])
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_org::text, true);
    RETURN QUERY SELECT o.plan, o.cors_origins FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'standard'::text, '{}'::text[];
    END IF;
    PERFORM set_config('app.tenant_id', '', true);
END
$$;
