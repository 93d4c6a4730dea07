//! What each event of a written batch did: applied, stale, duplicate or ignored.

use std::collections::{HashMap, HashSet};

use clerk_sync_core::reduce::Reduced;
use clerk_sync_core::ClerkEvent;
use sqlx::PgConnection;

use super::set::Changed;
use super::{sql, Event, Outcome};
use crate::Result;

/// An event's outcome, or the row whose current event decides it.
enum Pending<'a> {
    Decided(Outcome),
    /// Duplicate if the row (table, Clerk id) now holds this very event, else stale.
    Holder(&'static str, &'a str),
}

/// The winner of an entity changed its row, so the row now holds the winner's event: a loser is
/// a duplicate exactly when it is that event again. Only rows nothing changed need a lookup.
fn decide<'a>(
    i: usize,
    events: &'a [impl Event],
    reduced: &Reduced,
    changed: &Changed,
) -> Pending<'a> {
    let (meta, event) = events[i].borrow();
    let winner = reduced.winner_of.get(i).copied().unwrap_or(i);
    let held_by_winner = || {
        if winner == i {
            Outcome::Applied
        } else if events
            .get(winner)
            .is_some_and(|w| w.borrow().0.id == meta.id)
        {
            Outcome::Duplicate
        } else {
            Outcome::Stale
        }
    };
    let by_winner = |changed: &HashSet<String>, table, id: &'a str| {
        if changed.contains(id) {
            Pending::Decided(held_by_winner())
        } else {
            Pending::Holder(table, id)
        }
    };
    let by_deletion = |changed: &HashSet<String>, id: &str| {
        Pending::Decided(if winner == i && changed.contains(id) {
            Outcome::Applied
        } else {
            Outcome::Stale
        })
    };
    match event {
        ClerkEvent::Ignored { .. } => Pending::Decided(Outcome::Ignored),
        ClerkEvent::UserUpserted(u) => by_winner(&changed.users, "users", u.id.as_str()),
        ClerkEvent::OrgUpserted(o) => by_winner(&changed.orgs, "organizations", o.id.as_str()),
        ClerkEvent::UserDeleted(d) => by_deletion(&changed.user_deletions, d.id.as_str()),
        ClerkEvent::OrgDeleted(d) => by_deletion(&changed.org_deletions, d.id.as_str()),
        // A changed membership row says which event its fields now come from.
        ClerkEvent::MembershipUpserted(m)
        | ClerkEvent::MembershipDeleted(clerk_sync_core::MembershipDeleted(m)) => {
            match changed.memberships.get(m.id.as_str()) {
                Some(_) if winner == i => Pending::Decided(Outcome::Applied),
                Some(held) => Pending::Decided(if held == meta.id.as_str() {
                    Outcome::Duplicate
                } else {
                    Outcome::Stale
                }),
                None => Pending::Holder("org_memberships", m.id.as_str()),
            }
        }
    }
}

/// Each event's outcome, in order, after the batch was written (same transaction).
pub(super) async fn outcomes(
    conn: &mut PgConnection,
    events: &[impl Event],
    reduced: &Reduced,
    changed: &Changed,
) -> Result<Vec<Outcome>> {
    let pending: Vec<Pending<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, _)| decide(i, events, reduced, changed))
        .collect();
    let holders = holders(conn, &pending).await?;
    Ok(pending
        .iter()
        .zip(events.iter().map(|e| &e.borrow().0))
        .map(|(p, meta)| match p {
            Pending::Decided(outcome) => *outcome,
            Pending::Holder(table, id) => {
                if holders.get(&(*table, *id)).map(String::as_str) == Some(meta.id.as_str()) {
                    Outcome::Duplicate
                } else {
                    Outcome::Stale
                }
            }
        })
        .collect())
}

/// The event each asked-about row's fields came from.
async fn holders<'a>(
    conn: &mut PgConnection,
    pending: &[Pending<'a>],
) -> Result<HashMap<(&'static str, &'a str), String>> {
    let mut out = HashMap::new();
    for (table, statement) in [
        ("users", sql::USER_HOLDERS),
        ("organizations", sql::ORG_HOLDERS),
        ("org_memberships", sql::MEMBERSHIP_HOLDERS),
    ] {
        let ids: HashSet<&'a str> = pending
            .iter()
            .filter_map(|p| match p {
                Pending::Holder(t, id) if *t == table => Some(*id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            continue;
        }
        let rows: Vec<(String, String)> = sqlx::query_as(statement)
            .bind(ids.iter().copied().collect::<Vec<&str>>())
            .fetch_all(&mut *conn)
            .await?;
        for (id, event) in rows {
            if let Some(id) = ids.get(id.as_str()) {
                out.insert((table, *id), event);
            }
        }
    }
    Ok(out)
}
