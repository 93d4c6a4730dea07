//! A Postgres `NOTIFY` for every row a batch changed, sent in the batch's own transaction: a
//! listener hears of a row exactly when it becomes visible (Postgres delivers notifications at
//! commit, and never for a transaction that rolls back). Applications wait for a row (a user who
//! just signed up) instead of polling for it.

use sqlx::PgConnection;

use super::set::Changed;
use crate::Result;
use clerk_sync_core::reduce::Reduced;

/// One notification's payload: `{"table":"users","clerk_id":"user_…","op":"upsert"}` (Clerk ids
/// and table names are short ASCII: far inside Postgres's 8,000-byte payload limit). A user's or
/// organization's deletion also ends its memberships; those rows get no notification of their
/// own.
fn payload(table: &str, clerk_id: &str, op: &str) -> String {
    serde_json::json!({"table": table, "clerk_id": clerk_id, "op": op}).to_string()
}

/// The payloads for what `changed` says the batch changed, one per row.
fn payloads(reduced: &Reduced, changed: &Changed) -> Vec<String> {
    let mut out =
        Vec::with_capacity(changed.users.len() + changed.orgs.len() + changed.memberships.len());
    for (table, upserted, deleted) in [
        ("users", &changed.users, &changed.user_deletions),
        ("organizations", &changed.orgs, &changed.org_deletions),
    ] {
        out.extend(
            upserted
                .iter()
                .filter(|id| !deleted.contains(*id))
                .map(|id| payload(table, id, "upsert")),
        );
        out.extend(deleted.iter().map(|id| payload(table, id, "delete")));
    }
    let deleted_memberships: std::collections::HashSet<&str> = reduced
        .memberships
        .values()
        .filter(|m| m.deleted_at.is_some())
        .map(|m| m.row.clerk_id.as_str())
        .collect();
    out.extend(changed.memberships.keys().map(|id| {
        let op = if deleted_memberships.contains(id.as_str()) {
            "delete"
        } else {
            "upsert"
        };
        payload("org_memberships", id, op)
    }));
    out
}

/// Queues the batch's notifications on `channel` (sent when the transaction commits).
pub(super) async fn notify(
    conn: &mut PgConnection,
    channel: &str,
    reduced: &Reduced,
    changed: &Changed,
) -> Result<()> {
    let payloads = payloads(reduced, changed);
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query(super::sql::NOTIFY)
        .bind(channel)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}
