//! Applying decoded events to Postgres: the SQL form of [`clerk_sync_core::mirror`]'s rules.

mod notify;
mod outcomes;
mod set;
pub mod sql;

use std::borrow::Borrow;

use clerk_sync_core::reduce::reduce;
use clerk_sync_core::{ClerkEvent, EventMeta};
use sqlx::{PgConnection, PgPool};

use crate::Result;

/// The channel on which every committed change is announced (`LISTEN clerk_sync`): one
/// notification per changed row, `{"table", "clerk_id", "op"}`, delivered when the batch commits.
pub const NOTIFY_CHANNEL: &str = "clerk_sync";

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

/// A decoded event, owned or borrowed from the record it came in (the worker applies its records
/// where they are, without a copy).
pub trait Event: Borrow<(EventMeta, ClerkEvent)> + Sync {}
impl<E: Borrow<(EventMeta, ClerkEvent)> + Sync> Event for E {}

/// Whether the transaction applying a batch will commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Commit,
    /// A dry run, rolled back: the writes take the row locks they must, but the reads that only
    /// guard committed state against other workers take none, so a long dry run never fails on
    /// a live worker's open deletion and does not hold up the deletion of an organization. (A
    /// membership it inserts still holds its user through the foreign-key check, as any insert
    /// does.)
    DryRun,
}

/// Applies a batch inside the caller's transaction: reduced to one change per entity, then
/// written with a few set-based statements. Returns each event's outcome, in order. With
/// [`Intent::DryRun`] the caller will roll the transaction back.
pub async fn apply_events(
    conn: &mut PgConnection,
    events: &[impl Event],
    intent: Intent,
) -> Result<Vec<Outcome>> {
    sqlx::query(sql::NESTED_LOOPS).execute(&mut *conn).await?;
    let reduced = reduce(events);
    let changed = set::write(conn, &reduced, intent).await?;
    if intent == Intent::Commit {
        notify::notify(conn, NOTIFY_CHANNEL, &reduced, &changed).await?;
    }
    outcomes::outcomes(conn, events, &reduced, &changed).await
}

/// Applies events in one transaction: all or nothing.
pub async fn apply_all(pool: &PgPool, events: &[impl Event]) -> Result<Vec<Outcome>> {
    apply_all_in_spans(pool, events, &[]).await
}

/// [`apply_all`], each event's outcome recorded in its span (`spans[i]`, made by the caller:
/// the worker puts each in the trace the event was published in; none when empty).
pub(crate) async fn apply_all_in_spans(
    pool: &PgPool,
    events: &[impl Event],
    spans: &[tracing::Span],
) -> Result<Vec<Outcome>> {
    let mut tx = pool.begin().await?;
    let outcomes = apply_events(&mut tx, events, Intent::Commit).await?;
    tx.commit().await?;
    for (span, outcome) in spans.iter().zip(&outcomes) {
        span.in_scope(|| tracing::debug!(outcome = outcome.as_str(), "event applied"));
    }
    Ok(outcomes)
}
