use clerk_sync_core::mirror::{OrgRow, Version};
use clerk_sync_core::{EventMeta, OrgDeleted, Organization};
use sqlx::PgConnection;

use super::ts;
use crate::Result;

pub(super) async fn upsert_full(
    conn: &mut PgConnection,
    org: &Organization,
    meta: &EventMeta,
) -> Result<bool> {
    upsert_row(
        conn,
        &OrgRow::from_org(org),
        &Version::full(org.updated_at, meta),
    )
    .await
}

/// The organization copy inside a membership event: a stub, below Clerk's own org events.
pub(crate) async fn upsert_embedded(
    conn: &mut PgConnection,
    org: &Organization,
    meta: &EventMeta,
) -> Result<bool> {
    upsert_row(
        conn,
        &OrgRow::from_org(org),
        &Version::stub(org.updated_at, meta),
    )
    .await
}

async fn upsert_row(conn: &mut PgConnection, row: &OrgRow, version: &Version) -> Result<bool> {
    // A deleted organization keeps its last known fields; only deleted_at is final.
    let sql = format!(
        r#"
        INSERT INTO organizations AS o (clerk_id, name, slug, image_url, public_metadata,
            created_at, updated_at, synced_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
        VALUES ($1, $2, $3, $4, $5, {created}, {updated}, now(), $8, $9, $10, $11)
        ON CONFLICT (clerk_id) DO UPDATE SET
            name = excluded.name,
            slug = excluded.slug,
            image_url = excluded.image_url,
            public_metadata = excluded.public_metadata,
            created_at = excluded.created_at,
            updated_at = excluded.updated_at,
            synced_at = now(),
            sync_rank = excluded.sync_rank,
            sync_version_ms = excluded.sync_version_ms,
            sync_event_ms = excluded.sync_event_ms,
            sync_event_id = excluded.sync_event_id
        WHERE (excluded.sync_rank, excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id)
            > (o.sync_rank, o.sync_version_ms, o.sync_event_ms, o.sync_event_id)
        "#,
        created = ts(6),
        updated = ts(7),
    );
    let done = sqlx::query(&sql)
        .bind(row.clerk_id.as_str())
        .bind(&row.name)
        .bind(&row.slug)
        .bind(&row.image_url)
        .bind(&row.public_metadata)
        .bind(row.created_at.get())
        .bind(row.updated_at.get())
        .bind(version.rank.as_i16())
        .bind(version.at.get())
        .bind(version.event_at.get())
        .bind(version.event_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn delete(
    conn: &mut PgConnection,
    deleted: &OrgDeleted,
    meta: &EventMeta,
) -> Result<bool> {
    let version = Version::placeholder(meta);
    let sql = format!(
        r#"
        INSERT INTO organizations AS o (clerk_id, slug, public_metadata, created_at, updated_at,
            deleted_at, synced_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
        VALUES ($1, $5, '{{}}'::jsonb, {at}, {at}, {at}, now(), $3, $2, $2, $4)
        ON CONFLICT (clerk_id) DO UPDATE SET
            deleted_at = least(o.deleted_at, excluded.deleted_at),
            synced_at = now()
        WHERE o.deleted_at IS NULL OR o.deleted_at > excluded.deleted_at
        "#,
        at = ts(2),
    );
    let done = sqlx::query(&sql)
        .bind(deleted.id.as_str())
        .bind(meta.timestamp.get())
        .bind(version.rank.as_i16())
        .bind(version.event_id.as_str())
        .bind(&deleted.slug)
        .execute(&mut *conn)
        .await?;
    let cascade = format!(
        r#"
        UPDATE org_memberships m SET deleted_at = least(m.deleted_at, {at}), synced_at = now()
        WHERE m.org_id = $1 AND (m.deleted_at IS NULL OR m.deleted_at > {at})
        "#,
        at = ts(2),
    );
    let cascaded = sqlx::query(&cascade)
        .bind(deleted.id.as_str())
        .bind(meta.timestamp.get())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() + cascaded.rows_affected() > 0)
}
