//! The audit spine: events written in the same transaction as the change they record.

use std::net::IpAddr;

use palisade_core::{EventId, OrgId};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::pipeline::Tx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Who acted. `SessionUser` is resolved inside the database from the verified session.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    None,
    User(Uuid),
    SessionUser,
}

/// Where the request came from.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// One audit event to write.
pub struct NewEvent<'a> {
    pub id: EventId,
    pub org: Option<OrgId>,
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub action: &'static str,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<Uuid>,
    pub outcome: Outcome,
    pub details: Value,
    pub meta: &'a RequestMeta,
}

impl<'a> NewEvent<'a> {
    /// An event by the session's user, about nothing in particular, successful, no details:
    /// the builder methods below change what differs.
    pub fn new(id: EventId, at: OffsetDateTime, action: &'static str, meta: &'a RequestMeta) -> Self {
        Self {
            id,
            org: None,
            at,
            actor: Actor::SessionUser,
            action,
            target_kind: None,
            target_id: None,
            outcome: Outcome::Success,
            details: Value::Object(Default::default()),
            meta,
        }
    }

    pub fn org(mut self, org: OrgId) -> Self {
        self.org = Some(org);
        self
    }

    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    pub fn target(mut self, kind: &'static str, id: Uuid) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id);
        self
    }

    pub fn target_opt(self, target: Option<(&'static str, Uuid)>) -> Self {
        match target {
            Some((kind, id)) => self.target(kind, id),
            None => self,
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// The caller as `enter_*` recorded it for this transaction, as one row `c` (user_id,
/// api_key_id, session_id), read with `current_setting` directly rather than through
/// `palisade.current_user_id()` and its siblings, each of which verifies the settings' seal (an
/// HMAC, ~7 µs: three per event). The seal protects what policies and definer functions grant on
/// the strength of a setting; an audit event's actor is a plain value the runtime role may insert
/// as it likes (the policies bind only `tenant_id`, and that check still verifies the seal, once
/// per statement), so verifying it here protected nothing. Only our own statements read this way.
pub(crate) const CALLER_ROW: &str = "(SELECT nullif(current_setting('app.user_id', true), '')::uuid AS user_id, \
    nullif(current_setting('app.api_key_id', true), '')::uuid AS api_key_id, \
    nullif(current_setting('app.session_id', true), '')::uuid AS session_id) c";

/// The kind of a session-resolved actor: the API key the transaction entered with, else the
/// session's user. An explicit actor id (`Actor::User`) is always a user.
macro_rules! actor_kind {
    () => {
        "CASE WHEN $5::uuid IS NULL AND c.api_key_id IS NOT NULL THEN 'api_key' ELSE 'user' END"
    };
}

const INSERT: &str = const_format::concatcp!(
    "INSERT INTO palisade.audit_events \
    (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) \
    SELECT $1, $2, $3, \
           CASE WHEN $4::boolean THEN ",
    actor_kind!(),
    " END, \
           CASE WHEN $4::boolean THEN coalesce($5, c.api_key_id, c.user_id) END, \
           $6, $7, $8, $9, $10, $11, $12, $13 \
    FROM ",
    CALLER_ROW
);

/// Adds the event to the transaction. If it cannot be written, the whole transaction fails:
/// an action whose audit event is lost does not happen.
pub fn record<S>(tx: &mut Tx<S>, event: NewEvent<'_>) {
    tx.push_write(INSERT, event_params(event))
}

fn event_params(event: NewEvent<'_>) -> Vec<crate::pipeline::Param> {
    let (has_actor, actor_id) = match event.actor {
        Actor::None => (false, None),
        Actor::User(id) => (true, Some(id)),
        Actor::SessionUser => (true, None),
    };
    let user_agent = event.meta.user_agent.as_ref().map(|ua| ua.chars().take(512).collect::<String>());
    vec![
        Box::new(event.id.as_uuid()),
        Box::new(event.org.map(|o| o.as_uuid())),
        Box::new(event.at),
        Box::new(has_actor),
        Box::new(actor_id),
        Box::new(event.action),
        Box::new(event.target_kind),
        Box::new(event.target_id),
        Box::new(event.meta.ip),
        Box::new(user_agent),
        Box::new(event.meta.request_id.clone()),
        Box::new(event.outcome.as_str()),
        Box::new(event.details),
    ]
}

const INSERT_IF_FLAG: &str = const_format::concatcp!(
    "INSERT INTO palisade.audit_events \
    (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) \
    SELECT $1, $2, $3, \
           CASE WHEN $4::boolean THEN ",
    actor_kind!(),
    " END, \
           CASE WHEN $4::boolean THEN coalesce($5, c.api_key_id, c.user_id) END, \
           $6, $7, \
           CASE WHEN $7 = 'session' THEN coalesce($8, c.session_id) ELSE $8 END, \
           $9, $10, $11, $12, $13 \
    FROM ",
    CALLER_ROW,
    " WHERE current_setting($14, true) = 'on'"
);

/// Like `record`, but written only if an earlier statement of the transaction set the setting
/// `flag` to `on` (e.g. `app.refresh_reused`): for an outcome decided inside the database that
/// must be audited in the same transaction. A `session` target without an id is the session the
/// transaction entered.
pub fn record_if_flag<S>(tx: &mut Tx<S>, event: NewEvent<'_>, flag: &'static str) {
    let mut params = event_params(event);
    params.push(Box::new(flag));
    tx.push_write(INSERT_IF_FLAG, params)
}

/// An event as read back, with its chain position once sealed.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: Uuid,
    pub occurred_at: OffsetDateTime,
    pub actor_kind: Option<String>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    pub details: Value,
    pub seq: Option<i64>,
}

/// Which events to read: all filters optional; newest first, before the `before` position.
pub struct EventQuery {
    pub org: OrgId,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub actor: Option<Uuid>,
    pub action: Option<String>,
    pub target: Option<Uuid>,
    pub before: Option<(OffsetDateTime, Uuid)>,
    pub limit: i64,
}

// The list and the export share their columns and filters; they differ in how `details` comes
// back and in that the list pages (cursor and limit) while the export reads everything at once.
// Both ends of a read bound the scan of audit_events_tenant_time_idx even in a generic plan: they
// are always given, as plain parameters (absent ends as the first and last instants PostgreSQL
// and the time crate share). `$2 IS NULL OR …` is decided per row in a generic plan, and under
// row-level security a `coalesce($2, …)` is no index condition either (not known leakproof), so
// every later page read all the newer events before its own. The list's upper end is one row
// comparison: the cursor's position or the `to` time, whichever comes first
// (`list_upper_bound`); with two upper bounds the index scan may start from the looser.
const EVENT_COLUMNS: &str = "SELECT e.id, e.occurred_at, e.actor_kind, e.actor_id, e.action, e.target_kind, e.target_id, \
        host(e.ip), e.user_agent, e.request_id, e.outcome, ";
const EVENT_FILTERS: &str = ", c.seq \
    FROM palisade.audit_events e LEFT JOIN palisade.audit_chain c ON c.event_id = e.id AND c.tenant_id = e.tenant_id \
    WHERE e.tenant_id = $1 AND e.occurred_at >= $2 \
      AND ($3::uuid IS NULL OR e.actor_id = $3) AND ($4::text IS NULL OR e.action = $4) \
      AND ($5::uuid IS NULL OR e.target_id = $5) ";
const NEWEST_FIRST: &str = "ORDER BY e.occurred_at DESC, e.id DESC";
const LIST: &str = const_format::concatcp!(
    EVENT_COLUMNS,
    "e.details",
    EVENT_FILTERS,
    "AND (e.occurred_at, e.id) < ($6, $7) ",
    NEWEST_FIRST,
    " LIMIT $8"
);
/// For the export: `details` as the database's JSON text, passed through without being parsed
/// and written again.
const EXPORT_ALL: &str =
    const_format::concatcp!(EVENT_COLUMNS, "e.details::text", EVENT_FILTERS, "AND e.occurred_at < $6 ", NEWEST_FIRST);

/// Before every event: the start of year 1.
const EARLIEST: OffsetDateTime = time::macros::datetime!(0001-01-01 0:00 UTC);
/// After every event: the end of year 9999, and the greatest id.
const LATEST: (OffsetDateTime, Uuid) =
    (time::macros::datetime!(9999-12-31 23:59:59.999999 UTC), Uuid::from_u128(u128::MAX));

/// The parameters of EVENT_FILTERS ($1 to $5), which the list and the export share.
fn filter_params(q: &EventQuery) -> Vec<crate::pipeline::Param> {
    vec![
        Box::new(q.org.as_uuid()),
        Box::new(q.from.unwrap_or(EARLIEST)),
        Box::new(q.actor),
        Box::new(q.action.clone()),
        Box::new(q.target),
    ]
}

fn export_params(q: &EventQuery) -> Vec<crate::pipeline::Param> {
    let mut params = filter_params(q);
    params.push(Box::new(q.to.unwrap_or(LATEST.0)));
    params
}

/// Where a page ends, exclusive, in (occurred_at, id) order: the cursor's position or the start
/// of `to`, whichever is earlier. `None`: the newest event is on the page (bound: LATEST).
fn list_upper_bound(q: &EventQuery) -> Option<(OffsetDateTime, Uuid)> {
    // (to, nil): every event at `to` has an id above the nil UUID, so it is excluded, as `<` wants.
    let to = q.to.map(|at| (at, Uuid::nil()));
    match (to, q.before) {
        (Some(to), Some(before)) => Some(to.min(before)),
        (to, before) => to.or(before),
    }
}

fn list_params(q: EventQuery) -> Vec<crate::pipeline::Param> {
    let (at, id) = list_upper_bound(&q).unwrap_or(LATEST);
    let mut params = filter_params(&q);
    params.push(Box::new(at));
    params.push(Box::new(id));
    params.push(Box::new(q.limit));
    params
}

/// An event as the export reads it: the row as it came, read field by field without copying.
pub struct RawEvent(tokio_postgres::Row);

impl RawEvent {
    pub fn id(&self) -> Uuid {
        self.0.get(0)
    }
    pub fn occurred_at(&self) -> OffsetDateTime {
        self.0.get(1)
    }
    pub fn actor_kind(&self) -> Option<&str> {
        self.0.get(2)
    }
    pub fn actor_id(&self) -> Option<Uuid> {
        self.0.get(3)
    }
    pub fn action(&self) -> &str {
        self.0.get(4)
    }
    pub fn target_kind(&self) -> Option<&str> {
        self.0.get(5)
    }
    pub fn target_id(&self) -> Option<Uuid> {
        self.0.get(6)
    }
    pub fn ip(&self) -> Option<&str> {
        self.0.get(7)
    }
    pub fn user_agent(&self) -> Option<&str> {
        self.0.get(8)
    }
    pub fn request_id(&self) -> Option<&str> {
        self.0.get(9)
    }
    pub fn outcome(&self) -> &str {
        self.0.get(10)
    }
    /// `details` as JSON text (the database's rendering of the stored jsonb).
    pub fn details_json(&self) -> &str {
        self.0.get(11)
    }
    pub fn seq(&self) -> Option<i64> {
        self.0.get(12)
    }
}

/// Every event `q` matches (its cursor and limit are ignored), newest first, read in one
/// snapshot after `tx`'s checks (see `crate::stream`).
pub async fn export_events(tx: Tx<crate::Tenant>, db: &crate::Db, q: EventQuery) -> Result<EventBatches, StoreError> {
    Ok(EventBatches(tx.stream(db, EXPORT_ALL, export_params(&q)).await?))
}

/// The export's events, taken in batches (an empty batch: the end).
pub struct EventBatches(crate::RowBatches);

impl EventBatches {
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RawEvent>, StoreError> {
        Ok(self.0.next_batch(max).await?.into_iter().map(RawEvent).collect())
    }
}

pub fn list(tx: &mut Tx<crate::Tenant>, q: EventQuery) -> crate::Step<Vec<EventRow>> {
    tx.push_in_index_order(LIST, list_params(q), |rows| {
        Ok(rows
            .iter()
            .map(|r| EventRow {
                id: r.get(0),
                occurred_at: r.get(1),
                actor_kind: r.get(2),
                actor_id: r.get(3),
                action: r.get(4),
                target_kind: r.get(5),
                target_id: r.get(6),
                ip: r.get(7),
                user_agent: r.get(8),
                request_id: r.get(9),
                outcome: r.get(10),
                details: r.get(11),
                seq: r.get(12),
            })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(to: Option<OffsetDateTime>, before: Option<(OffsetDateTime, Uuid)>) -> EventQuery {
        EventQuery {
            org: OrgId::from_uuid(Uuid::nil()),
            from: None,
            to,
            actor: None,
            action: None,
            target: None,
            before,
            limit: 10,
        }
    }

    #[test]
    fn a_page_ends_at_the_cursor_or_the_range_whichever_comes_first() {
        let t = time::macros::datetime!(2026-12-07 12:00 UTC);
        let id = Uuid::from_u128(7);
        assert_eq!(list_upper_bound(&query(None, None)), None);
        assert_eq!(list_upper_bound(&query(Some(t), None)), Some((t, Uuid::nil())));
        assert_eq!(list_upper_bound(&query(None, Some((t, id)))), Some((t, id)));
        let earlier = t - time::Duration::seconds(1);
        assert_eq!(list_upper_bound(&query(Some(t), Some((earlier, id)))), Some((earlier, id)), "cursor first");
        assert_eq!(list_upper_bound(&query(Some(earlier), Some((t, id)))), Some((earlier, Uuid::nil())), "range first");
        // At the same instant `to` excludes every event at it, the cursor only those before it.
        assert_eq!(list_upper_bound(&query(Some(t), Some((t, id)))), Some((t, Uuid::nil())));
    }
}
