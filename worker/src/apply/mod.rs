//! Applying decoded events to Postgres: the SQL form of [`clerk_sync_core::mirror`]'s rules.

mod memberships;
mod orgs;
mod users;

use clerk_sync_core::{ClerkEvent, EventMeta};
use sqlx::{PgConnection, PgPool};

use crate::Result;

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The event changed the tables.
    Applied,
    /// The tables already held this version or a newer one.
    Stale,
    /// A type the sync does not mirror.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "stale",
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
    Ok(if changed {
        Outcome::Applied
    } else {
        Outcome::Stale
    })
}

/// Applies events in order in one transaction: all or nothing.
pub async fn apply_all(pool: &PgPool, events: &[(EventMeta, ClerkEvent)]) -> Result<Vec<Outcome>> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for (meta, event) in events {
        outcomes.push(apply_event(&mut tx, meta, event).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}
