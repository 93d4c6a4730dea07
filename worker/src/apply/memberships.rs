use clerk_sync_core::mirror::{MembershipRow, Version};
use clerk_sync_core::{EventMeta, Membership, Millis};
use sqlx::PgConnection;

use super::{orgs, ts, users};
use crate::Result;

/// Upserts a membership (and stubs for its user and organization). `deleted_at` is set for
/// `organizationMembership.deleted`.
pub(super) async fn upsert(
    conn: &mut PgConnection,
    m: &Membership,
    deleted_at: Option<Millis>,
    meta: &EventMeta,
) -> Result<bool> {
    let org_changed = orgs::upsert_embedded(conn, &m.org, meta).await?;
    let user_changed = users::upsert_stub(conn, &m.user, meta).await?;
    let row = MembershipRow::from_membership(m);
    let version = Version::full(m.updated_at, meta);

    // Generation = (created_at, orgmem id): a re-join replaces the row, an older membership
    // changes nothing. deleted_at is the earliest of this membership's own deletion and that
    // of its user or organization.
    let sql = format!(
        r#"
        WITH incoming AS (
            SELECT u.id AS user_id, least({deleted}, o.deleted_at, u.deleted_at) AS deleted_at
            FROM users u LEFT JOIN organizations o ON o.clerk_id = $3
            WHERE u.clerk_id = $2
        )
        INSERT INTO org_memberships AS m (clerk_id, user_id, org_id, role, permissions,
            created_at, updated_at, deleted_at, synced_at,
            sync_created_ms, sync_version_ms, sync_event_ms, sync_event_id)
        SELECT $1, i.user_id, $3, $4, $5, {created}, {updated}, i.deleted_at, now(),
            $6, $7, $9, $10
        FROM incoming i
        ON CONFLICT (user_id, org_id) DO UPDATE SET
            clerk_id = excluded.clerk_id,
            sync_created_ms = excluded.sync_created_ms,
            created_at = excluded.created_at,
            role = CASE WHEN {take} THEN excluded.role ELSE m.role END,
            permissions = CASE WHEN {take} THEN excluded.permissions ELSE m.permissions END,
            updated_at = CASE WHEN {take} THEN excluded.updated_at ELSE m.updated_at END,
            sync_version_ms = CASE WHEN {take} THEN excluded.sync_version_ms ELSE m.sync_version_ms END,
            sync_event_ms = CASE WHEN {take} THEN excluded.sync_event_ms ELSE m.sync_event_ms END,
            sync_event_id = CASE WHEN {take} THEN excluded.sync_event_id ELSE m.sync_event_id END,
            deleted_at = CASE WHEN {newer_gen} THEN excluded.deleted_at
                              ELSE least(m.deleted_at, excluded.deleted_at) END,
            synced_at = now()
        WHERE {newer_gen}
           OR ({same_gen} AND ({newer_version}
               OR excluded.deleted_at < coalesce(m.deleted_at, 'infinity'::timestamptz)))
        "#,
        deleted = "to_timestamp($8::float8 / 1000)",
        created = ts(6),
        updated = ts(7),
        take = TAKE,
        newer_gen = NEWER_GEN,
        same_gen = SAME_GEN,
        newer_version = NEWER_VERSION,
    );
    let done = sqlx::query(&sql)
        .bind(row.clerk_id.as_str())
        .bind(row.user_id.as_str())
        .bind(row.org_id.as_str())
        .bind(&row.role)
        .bind(&row.permissions)
        .bind(row.created_at.get())
        .bind(row.updated_at.get())
        .bind(deleted_at.map(Millis::get))
        .bind(version.event_at.get())
        .bind(version.event_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0 || org_changed || user_changed)
}

const NEWER_GEN: &str =
    "((excluded.sync_created_ms, excluded.clerk_id) > (m.sync_created_ms, m.clerk_id))";
const SAME_GEN: &str =
    "((excluded.sync_created_ms, excluded.clerk_id) = (m.sync_created_ms, m.clerk_id))";
const NEWER_VERSION: &str =
    "((excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id) \
     > (m.sync_version_ms, m.sync_event_ms, m.sync_event_id))";
const TAKE: &str =
    "(((excluded.sync_created_ms, excluded.clerk_id) > (m.sync_created_ms, m.clerk_id)) \
     OR (((excluded.sync_created_ms, excluded.clerk_id) = (m.sync_created_ms, m.clerk_id)) \
     AND ((excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id) \
     > (m.sync_version_ms, m.sync_event_ms, m.sync_event_id))))";
