//! The synced tables read back for a person (`clerk-sync dev --demo`): whether an event was
//! applied, and a short listing of every row.

use std::fmt::Write as _;

use sqlx::{PgPool, Row};

use crate::Result;

/// Whether the user row holds the event `event_id` (the worker applied it).
pub async fn applied(pool: &PgPool, event_id: &str) -> Result<bool> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE sync_event_id = $1")
        .bind(event_id)
        .fetch_one(pool)
        .await?;
    Ok(rows > 0)
}

/// Every user, organization and membership, a line each.
pub async fn listing(pool: &PgPool) -> Result<String> {
    let mut out = String::from("\nusers:\n");
    for row in sqlx::query("SELECT clerk_id, email, name, username, deleted_at::text AS deleted FROM users ORDER BY clerk_id")
        .fetch_all(pool)
        .await?
    {
        let _ = writeln!(
            out,
            "  {} email={:?} name={:?} username={:?} deleted_at={:?}",
            row.get::<String, _>("clerk_id"),
            row.get::<Option<String>, _>("email"),
            row.get::<Option<String>, _>("name"),
            row.get::<Option<String>, _>("username"),
            row.get::<Option<String>, _>("deleted"),
        );
    }
    out.push_str("organizations:\n");
    for row in sqlx::query("SELECT clerk_id, name, slug FROM organizations ORDER BY clerk_id")
        .fetch_all(pool)
        .await?
    {
        let _ = writeln!(
            out,
            "  {} name={:?} slug={:?}",
            row.get::<String, _>("clerk_id"),
            row.get::<Option<String>, _>("name"),
            row.get::<Option<String>, _>("slug"),
        );
    }
    out.push_str("org_memberships:\n");
    for row in sqlx::query(
        "SELECT m.clerk_id, u.clerk_id AS user_clerk_id, m.org_id, m.role FROM org_memberships m JOIN users u ON u.id = m.user_id ORDER BY m.clerk_id",
    )
    .fetch_all(pool)
    .await?
    {
        let _ = writeln!(
            out,
            "  {} user={} org={} role={}",
            row.get::<String, _>("clerk_id"),
            row.get::<String, _>("user_clerk_id"),
            row.get::<String, _>("org_id"),
            row.get::<String, _>("role"),
        );
    }
    Ok(out)
}
