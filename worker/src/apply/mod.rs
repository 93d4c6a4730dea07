//! Applying decoded events to Postgres: the SQL form of [`clerk_sync_core::mirror`]'s rules.

mod set;

use clerk_sync_core::reduce::reduce;
use clerk_sync_core::{ClerkEvent, EventMeta};
use sqlx::{PgConnection, PgPool};

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

/// Applies one event inside the caller's transaction.
pub async fn apply_event(
    conn: &mut PgConnection,
    meta: &EventMeta,
    event: &ClerkEvent,
) -> Result<Outcome> {
    let events = [(meta.clone(), event.clone())];
    Ok(apply_events(conn, &events)
        .await?
        .pop()
        .unwrap_or(Outcome::Ignored))
}

/// Applies a batch inside the caller's transaction: reduced to one change per entity, then
/// written with a few set-based statements. Returns each event's outcome, in order.
pub async fn apply_events(
    conn: &mut PgConnection,
    events: &[(EventMeta, ClerkEvent)],
) -> Result<Vec<Outcome>> {
    let reduced = reduce(events);
    let changed = set::write(conn, &reduced).await?;

    // The events that won their entity and changed it were applied; the others either left the
    // row as it was (stale) or are that very row's event again (duplicate).
    let mut outcomes = Vec::with_capacity(events.len());
    let mut undecided: Vec<(usize, &'static str, String)> = Vec::new();
    for (i, (meta, event)) in events.iter().enumerate() {
        let outcome = match event {
            ClerkEvent::Ignored { .. } => Some(Outcome::Ignored),
            ClerkEvent::UserUpserted(u) => {
                let won = reduced.users.get(&u.id).is_some_and(|w| w.index == i);
                (won && changed.users.contains(u.id.as_str()))
                    .then_some(Outcome::Applied)
                    .or_else(|| {
                        undecided.push((i, "users", u.id.as_str().to_owned()));
                        None
                    })
            }
            ClerkEvent::OrgUpserted(o) => {
                let won = reduced.orgs.get(&o.id).is_some_and(|w| w.index == i);
                (won && changed.orgs.contains(o.id.as_str()))
                    .then_some(Outcome::Applied)
                    .or_else(|| {
                        undecided.push((i, "organizations", o.id.as_str().to_owned()));
                        None
                    })
            }
            ClerkEvent::UserDeleted(d) => {
                let won = reduced
                    .user_deletions
                    .get(&d.id)
                    .is_some_and(|w| w.index == i);
                Some(if won && changed.user_deletions.contains(d.id.as_str()) {
                    Outcome::Applied
                } else {
                    Outcome::Stale
                })
            }
            ClerkEvent::OrgDeleted(d) => {
                let won = reduced
                    .org_deletions
                    .get(&d.id)
                    .is_some_and(|w| w.index == i);
                Some(if won && changed.org_deletions.contains(d.id.as_str()) {
                    Outcome::Applied
                } else {
                    Outcome::Stale
                })
            }
            ClerkEvent::MembershipUpserted(m)
            | ClerkEvent::MembershipDeleted(clerk_sync_core::MembershipDeleted(m)) => {
                let key = (m.user.id.clone(), m.org.id.clone());
                let won = reduced.memberships.get(&key).is_some_and(|w| w.index == i);
                (won && changed.memberships.contains(m.id.as_str()))
                    .then_some(Outcome::Applied)
                    .or_else(|| {
                        undecided.push((i, "org_memberships", m.id.as_str().to_owned()));
                        None
                    })
            }
        };
        let _ = meta;
        outcomes.push(outcome);
    }
    let holders = row_events(conn, &undecided).await?;
    Ok(outcomes
        .into_iter()
        .enumerate()
        .map(|(i, outcome)| {
            outcome.unwrap_or_else(|| {
                let (table, id) = undecided
                    .iter()
                    .find(|(j, _, _)| *j == i)
                    .map(|(_, t, id)| (*t, id.as_str()))
                    .unwrap_or(("", ""));
                let holds_this_event = holders
                    .get(&(table, id.to_owned()))
                    .is_some_and(|e| e == events[i].0.id.as_str());
                if holds_this_event {
                    Outcome::Duplicate
                } else {
                    Outcome::Stale
                }
            })
        })
        .collect())
}

/// The event id each row's fields came from, for the rows of events that changed nothing.
async fn row_events(
    conn: &mut PgConnection,
    undecided: &[(usize, &'static str, String)],
) -> Result<std::collections::HashMap<(&'static str, String), String>> {
    let mut out = std::collections::HashMap::new();
    for table in ["users", "organizations", "org_memberships"] {
        let ids: Vec<String> = undecided
            .iter()
            .filter(|(_, t, _)| *t == table)
            .map(|(_, _, id)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let sql = format!("SELECT clerk_id, sync_event_id FROM {table} WHERE clerk_id = ANY($1)");
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
        for (id, event) in rows {
            out.insert((table, id), event);
        }
    }
    Ok(out)
}

/// Applies events in one transaction: all or nothing.
pub async fn apply_all(pool: &PgPool, events: &[(EventMeta, ClerkEvent)]) -> Result<Vec<Outcome>> {
    apply_all_in_spans(pool, events, |_| tracing::Span::none()).await
}

/// [`apply_all`], with one span per event (`span_for(index)`; the worker puts each in the trace
/// the event was published in). Each span lasts while its batch is written.
pub async fn apply_all_in_spans(
    pool: &PgPool,
    events: &[(EventMeta, ClerkEvent)],
    span_for: impl Fn(usize) -> tracing::Span,
) -> Result<Vec<Outcome>> {
    let spans: Vec<tracing::Span> = (0..events.len()).map(span_for).collect();
    let mut tx = pool.begin().await?;
    let outcomes = apply_events(&mut tx, events).await?;
    tx.commit().await?;
    for (span, outcome) in spans.iter().zip(&outcomes) {
        span.in_scope(|| tracing::debug!(outcome = outcome.as_str(), "event applied"));
    }
    Ok(outcomes)
}
