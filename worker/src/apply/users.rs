use clerk_sync_core::mirror::{UserRow, Version};
use clerk_sync_core::{EventMeta, User, UserId, UserStub};
use sqlx::PgConnection;

use super::ts;
use crate::Result;

pub(super) async fn upsert(conn: &mut PgConnection, user: &User, meta: &EventMeta) -> Result<bool> {
    upsert_row(
        conn,
        &UserRow::from_user(user),
        &Version::full(user.updated_at, meta),
    )
    .await
}

/// A membership names a user that may not have arrived yet: a stub keeps the foreign key whole.
pub(crate) async fn upsert_stub(
    conn: &mut PgConnection,
    stub: &UserStub,
    meta: &EventMeta,
) -> Result<bool> {
    let row = UserRow::from_stub(stub, meta.timestamp);
    upsert_row(conn, &row, &Version::stub(meta.timestamp, meta)).await
}

async fn upsert_row(conn: &mut PgConnection, row: &UserRow, version: &Version) -> Result<bool> {
    // A deleted user stays erased, whatever version arrives later.
    let sql = format!(
        r#"
        INSERT INTO users AS u (clerk_id, email, name, first_name, last_name, username, image_url,
            external_id, public_metadata, created_at, updated_at, synced_at,
            sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {created}, {updated}, now(), $12, $13, $14, $15)
        ON CONFLICT (clerk_id) DO UPDATE SET
            email = CASE WHEN u.deleted_at IS NULL THEN excluded.email END,
            name = CASE WHEN u.deleted_at IS NULL THEN excluded.name END,
            first_name = CASE WHEN u.deleted_at IS NULL THEN excluded.first_name END,
            last_name = CASE WHEN u.deleted_at IS NULL THEN excluded.last_name END,
            username = CASE WHEN u.deleted_at IS NULL THEN excluded.username END,
            image_url = CASE WHEN u.deleted_at IS NULL THEN excluded.image_url END,
            external_id = CASE WHEN u.deleted_at IS NULL THEN excluded.external_id END,
            public_metadata = CASE WHEN u.deleted_at IS NULL THEN excluded.public_metadata
                                   ELSE '{{}}'::jsonb END,
            created_at = excluded.created_at,
            updated_at = excluded.updated_at,
            synced_at = now(),
            sync_rank = excluded.sync_rank,
            sync_version_ms = excluded.sync_version_ms,
            sync_event_ms = excluded.sync_event_ms,
            sync_event_id = excluded.sync_event_id
        WHERE (excluded.sync_rank, excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id)
            > (u.sync_rank, u.sync_version_ms, u.sync_event_ms, u.sync_event_id)
        "#,
        created = ts(10),
        updated = ts(11),
    );
    let done = sqlx::query(&sql)
        .bind(row.clerk_id.as_str())
        .bind(&row.email)
        .bind(&row.name)
        .bind(&row.first_name)
        .bind(&row.last_name)
        .bind(&row.username)
        .bind(&row.image_url)
        .bind(&row.external_id)
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

pub(super) async fn delete(conn: &mut PgConnection, id: &UserId, meta: &EventMeta) -> Result<bool> {
    let version = Version::placeholder(meta);
    // A deletion seen first leaves a placeholder tombstone; its times stand in until a real
    // version fills them.
    let sql = format!(
        r#"
        INSERT INTO users AS u (clerk_id, public_metadata, created_at, updated_at, deleted_at,
            synced_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
        VALUES ($1, '{{}}'::jsonb, {at}, {at}, {at}, now(), $3, $2, $2, $4)
        ON CONFLICT (clerk_id) DO UPDATE SET
            deleted_at = least(u.deleted_at, excluded.deleted_at),
            email = NULL, name = NULL, first_name = NULL, last_name = NULL, username = NULL,
            image_url = NULL, external_id = NULL, public_metadata = '{{}}'::jsonb,
            synced_at = now()
        WHERE u.deleted_at IS NULL OR u.deleted_at > excluded.deleted_at
        "#,
        at = ts(2),
    );
    let done = sqlx::query(&sql)
        .bind(id.as_str())
        .bind(meta.timestamp.get())
        .bind(version.rank.as_i16())
        .bind(version.event_id.as_str())
        .execute(&mut *conn)
        .await?;
    let cascade = format!(
        r#"
        UPDATE org_memberships m SET deleted_at = least(m.deleted_at, {at}), synced_at = now()
        FROM users u
        WHERE u.clerk_id = $1 AND m.user_id = u.id
          AND (m.deleted_at IS NULL OR m.deleted_at > {at})
        "#,
        at = ts(2),
    );
    let cascaded = sqlx::query(&cascade)
        .bind(id.as_str())
        .bind(meta.timestamp.get())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() + cascaded.rows_affected() > 0)
}
