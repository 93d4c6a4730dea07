//! Applying decoded events to Postgres: the SQL form of [`clerk_sync_core::mirror`]'s rules.

mod memberships;
mod orgs;
mod users;

use clerk_sync_core::{ClerkEvent, EventMeta};
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;

use crate::Result;

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The event changed the tables.
    Applied,
    /// The tables already held a newer (or equal) version.
    Stale,
    /// The tables already held exactly this event (a redelivery).
    Duplicate,
    /// A type the sync does not mirror.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "stale",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Milliseconds to `timestamptz`, rounded to Postgres' microseconds, in one place.
pub(crate) const TS: &str = "to_timestamp($::float8 / 1000)";

pub(crate) fn ts(param: u8) -> String {
    TS.replace('$', &format!("${param}"))
}

/// Applies one event inside the caller's transaction.
pub async fn apply_event(
    conn: &mut PgConnection,
    meta: &EventMeta,
    event: &ClerkEvent,
) -> Result<Outcome> {
    let changed = match event {
        ClerkEvent::UserUpserted(user) => users::upsert(conn, user, meta).await?,
        ClerkEvent::UserDeleted(deleted) => users::delete(conn, &deleted.id, meta).await?,
        ClerkEvent::OrgUpserted(org) => orgs::upsert_full(conn, org, meta).await?,
        ClerkEvent::OrgDeleted(deleted) => orgs::delete(conn, deleted, meta).await?,
        ClerkEvent::MembershipUpserted(m) => memberships::upsert(conn, m, None, meta).await?,
        ClerkEvent::MembershipDeleted(d) => {
            memberships::upsert(conn, &d.0, Some(meta.timestamp), meta).await?
        }
        ClerkEvent::Ignored { .. } => return Ok(Outcome::Ignored),
    };
    if changed {
        return Ok(Outcome::Applied);
    }
    // Unchanged: a redelivery when the row's fields came from this very event.
    let holder = match event {
        ClerkEvent::UserUpserted(u) => Some(("users", u.id.as_str())),
        ClerkEvent::OrgUpserted(o) => Some(("organizations", o.id.as_str())),
        ClerkEvent::MembershipUpserted(m) => Some(("org_memberships", m.id.as_str())),
        ClerkEvent::MembershipDeleted(d) => Some(("org_memberships", d.0.id.as_str())),
        _ => None,
    };
    if let Some((table, clerk_id)) = holder {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE clerk_id = $1 AND sync_event_id = $2)"
        );
        let duplicate: bool = sqlx::query_scalar(&sql)
            .bind(clerk_id)
            .bind(meta.id.as_str())
            .fetch_one(&mut *conn)
            .await?;
        if duplicate {
            return Ok(Outcome::Duplicate);
        }
    }
    Ok(Outcome::Stale)
}

/// Applies events in order in one transaction: all or nothing.
pub async fn apply_all(pool: &PgPool, events: &[(EventMeta, ClerkEvent)]) -> Result<Vec<Outcome>> {
    apply_all_in_spans(pool, events, |_| tracing::Span::none()).await
}

/// [`apply_all`], each event applied inside the span `span_for(index)` makes (the worker puts
/// each event's span in the trace it was published in).
pub async fn apply_all_in_spans(
    pool: &PgPool,
    events: &[(EventMeta, ClerkEvent)],
    span_for: impl Fn(usize) -> tracing::Span,
) -> Result<Vec<Outcome>> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for (i, (meta, event)) in events.iter().enumerate() {
        let outcome = apply_event(&mut tx, meta, event)
            .instrument(span_for(i))
            .await?;
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}
