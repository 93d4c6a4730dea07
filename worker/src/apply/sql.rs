//! Every statement the worker applies events with, as constants: the SQL form of
//! `clerk_sync_core::mirror`'s rules. Fragments shared by several statements are macros, so
//! that each statement is one static text, prepared against the migrated schema by a test
//! (`tests/e2e/statements.rs`, from [`ALL`]).

/// Milliseconds since the epoch in column `$col`, as a timestamptz.
macro_rules! ts {
    ($col:literal) => {
        concat!("to_timestamp(", $col, "::float8 / 1000)")
    };
}

/// A membership row of a newer generation (left and re-joined) than the stored one.
macro_rules! newer_gen {
    () => {
        "((excluded.sync_created_ms, excluded.clerk_id) > (m.sync_created_ms, m.clerk_id))"
    };
}

macro_rules! same_gen {
    () => {
        "((excluded.sync_created_ms, excluded.clerk_id) = (m.sync_created_ms, m.clerk_id))"
    };
}

macro_rules! newer_version {
    () => {
        "((excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id) \
         > (m.sync_version_ms, m.sync_event_ms, m.sync_event_id))"
    };
}

/// Whether a membership's incoming fields replace the stored ones.
macro_rules! take {
    () => {
        concat!(
            "(",
            newer_gen!(),
            " OR (",
            same_gen!(),
            " AND ",
            newer_version!(),
            "))"
        )
    };
}

/// Assigning the unique key (to itself) makes a deletion lock its row FOR UPDATE rather than the
/// weaker lock of an ordinary update: the one lock a membership's FOR KEY SHARE read waits for.
/// Postgres picks the lock from the columns assigned, not from whether their values change.
macro_rules! deletion_lock {
    () => {
        "clerk_id = excluded.clerk_id"
    };
}

/// `clerk_sync_core::mirror::Rank::Placeholder` (checked by a test).
macro_rules! placeholder_rank {
    () => {
        "-1"
    };
}

/// Planner settings for one batch's transaction: every statement looks rows up by unique key, a
/// few to a few thousand per batch, i.e. nested loops over the indexes. Left to itself the
/// planner hashes whole tables from statistics gathered while they were small (or from a generic
/// plan cached then), which costs 10x.
pub const NESTED_LOOPS: &str = "SELECT set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true)";

/// Users: winners under the version guard, a placeholder (a tombstone) for each deleted user the
/// table does not hold yet. A deleted user stays erased, whatever version arrives later. A
/// placeholder is inserted where no row is; where one is, it changes nothing (the deletion pass
/// erases the row) but locks it here, in key order with the rest of the pass.
pub const UPSERT_USERS: &str = concat!(
    r#"
    INSERT INTO users AS u (clerk_id, email, name, first_name, last_name, username, image_url,
        external_id, public_metadata, created_at, updated_at, deleted_at, synced_at,
        sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
    SELECT c, e, n, f, l, un, img, ext, md, "#,
    ts!("ca"),
    ", ",
    ts!("ua"),
    ", ",
    ts!("d"),
    r#", now(), rk, vm, em, ei
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[]::jsonb[], $10::int8[], $11::int8[], $12::int2[], $13::int8[],
                $14::int8[], $15::text[], $16::int8[])
         AS x(c, e, n, f, l, un, img, ext, md, ca, ua, rk, vm, em, ei, d)
    WHERE x.d IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM users h WHERE h.clerk_id = x.c
                      AND (h.sync_rank, h.sync_version_ms, h.sync_event_ms, h.sync_event_id)
                          >= (x.rk, x.vm, x.em, x.ei))
    ON CONFLICT (clerk_id) DO UPDATE SET
        email = CASE WHEN u.deleted_at IS NULL THEN excluded.email END,
        name = CASE WHEN u.deleted_at IS NULL THEN excluded.name END,
        first_name = CASE WHEN u.deleted_at IS NULL THEN excluded.first_name END,
        last_name = CASE WHEN u.deleted_at IS NULL THEN excluded.last_name END,
        username = CASE WHEN u.deleted_at IS NULL THEN excluded.username END,
        image_url = CASE WHEN u.deleted_at IS NULL THEN excluded.image_url END,
        external_id = CASE WHEN u.deleted_at IS NULL THEN excluded.external_id END,
        public_metadata = CASE WHEN u.deleted_at IS NULL THEN excluded.public_metadata
                               ELSE '{}'::jsonb END,
        created_at = excluded.created_at,
        updated_at = excluded.updated_at,
        synced_at = now(),
        sync_rank = excluded.sync_rank,
        sync_version_ms = excluded.sync_version_ms,
        sync_event_ms = excluded.sync_event_ms,
        sync_event_id = excluded.sync_event_id
    WHERE excluded.deleted_at IS NULL
        AND (excluded.sync_rank, excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id)
            > (u.sync_rank, u.sync_version_ms, u.sync_event_ms, u.sync_event_id)
    RETURNING clerk_id
    "#
);

/// Organizations, as [`UPSERT_USERS`]. A deleted organization keeps its last known fields; only
/// deleted_at is final (set by the deletion pass, or by a placeholder, which is what a deletion
/// seen first leaves).
pub const UPSERT_ORGS: &str = concat!(
    r#"
    INSERT INTO organizations AS o (clerk_id, name, slug, image_url, public_metadata,
        created_at, updated_at, deleted_at, synced_at,
        sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
    SELECT c, n, s, img, md, "#,
    ts!("ca"),
    ", ",
    ts!("ua"),
    ", ",
    ts!("d"),
    r#", now(), rk, vm, em, ei
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]::jsonb[], $6::int8[],
                $7::int8[], $8::int2[], $9::int8[], $10::int8[], $11::text[], $12::int8[])
         AS x(c, n, s, img, md, ca, ua, rk, vm, em, ei, d)
    WHERE x.d IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM organizations h WHERE h.clerk_id = x.c
                      AND (h.sync_rank, h.sync_version_ms, h.sync_event_ms, h.sync_event_id)
                          >= (x.rk, x.vm, x.em, x.ei))
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
    WHERE excluded.deleted_at IS NULL
        AND (excluded.sync_rank, excluded.sync_version_ms, excluded.sync_event_ms, excluded.sync_event_id)
            > (o.sync_rank, o.sync_version_ms, o.sync_event_ms, o.sync_event_id)
    RETURNING clerk_id
    "#
);

/// Users deleted: erased, the earliest deletion kept. The upsert pass has inserted a placeholder
/// for every deleted user the table did not hold; inserting one here too only matters should
/// that pass have been skipped.
pub const DELETE_USERS: &str = concat!(
    r#"
    INSERT INTO users AS u (clerk_id, public_metadata, created_at, updated_at, deleted_at,
        synced_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
    SELECT c, '{}'::jsonb, "#,
    ts!("a"),
    ", ",
    ts!("a"),
    ", ",
    ts!("a"),
    ", now(), ",
    placeholder_rank!(),
    r#", a, a, ei
    FROM unnest($1::text[], $2::int8[], $3::text[]) AS x(c, a, ei)
    ON CONFLICT (clerk_id) DO UPDATE SET
        "#,
    deletion_lock!(),
    r#",
        deleted_at = least(u.deleted_at, excluded.deleted_at),
        email = NULL, name = NULL, first_name = NULL, last_name = NULL, username = NULL,
        image_url = NULL, external_id = NULL, public_metadata = '{}'::jsonb,
        synced_at = now()
    WHERE u.deleted_at IS NULL OR u.deleted_at > excluded.deleted_at
    RETURNING clerk_id
    "#
);

/// Organizations deleted: the earliest deletion kept, their fields as they were.
pub const DELETE_ORGS: &str = concat!(
    r#"
    INSERT INTO organizations AS o (clerk_id, slug, public_metadata, created_at, updated_at,
        deleted_at, synced_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
    SELECT c, s, '{}'::jsonb, "#,
    ts!("a"),
    ", ",
    ts!("a"),
    ", ",
    ts!("a"),
    ", now(), ",
    placeholder_rank!(),
    r#", a, a, ei
    FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) AS x(c, a, s, ei)
    ON CONFLICT (clerk_id) DO UPDATE SET
        "#,
    deletion_lock!(),
    r#",
        deleted_at = least(o.deleted_at, excluded.deleted_at),
        synced_at = now()
    WHERE o.deleted_at IS NULL OR o.deleted_at > excluded.deleted_at
    RETURNING clerk_id
    "#
);

/// The memberships of the batch's deleted users and organizations ended, each at the earliest
/// of those deletions, locked in key order first: a batch deleting users and another deleting an
/// organization they belong to meet on the same memberships, and would deadlock if each took
/// them in its own order (by user, by organization).
pub const CASCADE_DELETIONS: &str = concat!(
    r#"
    WITH hit AS (
        SELECT m.id, x.a
        FROM unnest($1::text[], $2::int8[]) AS x(c, a)
            JOIN users u ON u.clerk_id = x.c JOIN org_memberships m ON m.user_id = u.id
        UNION ALL
        SELECT m.id, y.a
        FROM unnest($3::text[], $4::int8[]) AS y(c, a)
            JOIN org_memberships m ON m.org_id = y.c
    ), earliest AS (
        SELECT id, min(a) AS a FROM hit GROUP BY id
    ), target AS (
        SELECT m.id, e.a FROM earliest e JOIN org_memberships m ON m.id = e.id
        WHERE m.deleted_at IS NULL OR m.deleted_at > "#,
    ts!("e.a"),
    r#"
        ORDER BY m.user_id, m.org_id
        FOR NO KEY UPDATE OF m
    )
    UPDATE org_memberships m SET deleted_at = least(m.deleted_at, "#,
    ts!("target.a"),
    r#"), synced_at = now()
    FROM target WHERE m.id = target.id
    "#
);

/// Memberships. Generation = (created_at, orgmem id): a re-join replaces the row, an older
/// membership changes nothing. deleted_at is the earliest of this membership's own deletion and
/// that of its user or organization. The user and organization rows are read with `$guard`
/// (see [`UPSERT_MEMBERSHIPS`]).
macro_rules! upsert_memberships {
    ($guard:literal) => {
        concat!(
            r#"
    WITH x AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[])
            AS x(c, uc, oc, r, p, ca, ua, d, em, ei)
    ), incoming AS (
        SELECT x.*, u.id AS user_id, least("#,
            ts!("x.d"),
            r#", o.deleted_at, u.deleted_at) AS deleted_at
        FROM x JOIN users u ON u.clerk_id = x.uc JOIN organizations o ON o.clerk_id = x.oc
        "#,
            $guard,
            r#"
    )
    INSERT INTO org_memberships AS m (clerk_id, user_id, org_id, role, permissions,
        created_at, updated_at, deleted_at, synced_at,
        sync_created_ms, sync_version_ms, sync_event_ms, sync_event_id)
    SELECT c, user_id, oc, r, p::text[], "#,
            ts!("ca"),
            ", ",
            ts!("ua"),
            r#",
        deleted_at, now(), ca, ua, em, ei
    FROM incoming
    ON CONFLICT (user_id, org_id) DO UPDATE SET
        clerk_id = excluded.clerk_id,
        sync_created_ms = excluded.sync_created_ms,
        created_at = excluded.created_at,
        role = CASE WHEN "#,
            take!(),
            r#" THEN excluded.role ELSE m.role END,
        permissions = CASE WHEN "#,
            take!(),
            r#" THEN excluded.permissions ELSE m.permissions END,
        updated_at = CASE WHEN "#,
            take!(),
            r#" THEN excluded.updated_at ELSE m.updated_at END,
        sync_version_ms = CASE WHEN "#,
            take!(),
            r#" THEN excluded.sync_version_ms ELSE m.sync_version_ms END,
        sync_event_ms = CASE WHEN "#,
            take!(),
            r#" THEN excluded.sync_event_ms ELSE m.sync_event_ms END,
        sync_event_id = CASE WHEN "#,
            take!(),
            r#" THEN excluded.sync_event_id ELSE m.sync_event_id END,
        deleted_at = CASE WHEN "#,
            newer_gen!(),
            r#" THEN excluded.deleted_at
                          ELSE least(m.deleted_at, excluded.deleted_at) END,
        synced_at = now()
    WHERE "#,
            newer_gen!(),
            "\n       OR (",
            same_gen!(),
            " AND (",
            newer_version!(),
            r#"
           OR excluded.deleted_at < coalesce(m.deleted_at, 'infinity'::timestamptz)))
    RETURNING clerk_id, sync_event_id
    "#
        )
    };
}

/// Memberships, reading their user and organization FOR KEY SHARE, which only a deletion's lock
/// blocks (see `deletion_lock!`): while another worker deletes either, this statement fails at
/// once (NOWAIT, 55P03, a conflict) and the batch is retried after a backoff, when it reads the
/// deleted row; when this batch read them first, the deletion waits, and its cascade then sees
/// this membership. A plain read would miss the uncommitted deletion, and the cascade this
/// uncommitted membership: a member of a deleted user or organization left active. Not waiting
/// keeps two batches that each delete a user the other's memberships refer to from deadlocking
/// (a 1 s stall each time). Ordinary updates of users and organizations take a weaker lock and
/// never stop these reads. (Both rows exist: the batch wrote every membership's user and
/// organization stubs first.)
pub const UPSERT_MEMBERSHIPS: &str = upsert_memberships!("FOR KEY SHARE OF u, o NOWAIT");

/// [`UPSERT_MEMBERSHIPS`] for a dry run, reading without a lock: nothing a dry run writes is
/// ever seen by another transaction.
pub const UPSERT_MEMBERSHIPS_DRY_RUN: &str = upsert_memberships!("");

/// The event each asked-about row's fields came from, per table.
pub const USER_HOLDERS: &str =
    "SELECT t.clerk_id, t.sync_event_id FROM unnest($1::text[]) AS x(c) \
     JOIN users t ON t.clerk_id = x.c";
pub const ORG_HOLDERS: &str = "SELECT t.clerk_id, t.sync_event_id FROM unnest($1::text[]) AS x(c) \
     JOIN organizations t ON t.clerk_id = x.c";
pub const MEMBERSHIP_HOLDERS: &str =
    "SELECT t.clerk_id, t.sync_event_id FROM unnest($1::text[]) AS x(c) \
     JOIN org_memberships t ON t.clerk_id = x.c";

/// One notification per changed row, on the channel `$1`.
pub const NOTIFY: &str = "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p";

/// Every statement above, named: prepared against the migrated schema by a test.
pub const ALL: [(&str, &str); 12] = [
    ("NESTED_LOOPS", NESTED_LOOPS),
    ("UPSERT_USERS", UPSERT_USERS),
    ("UPSERT_ORGS", UPSERT_ORGS),
    ("DELETE_USERS", DELETE_USERS),
    ("DELETE_ORGS", DELETE_ORGS),
    ("CASCADE_DELETIONS", CASCADE_DELETIONS),
    ("UPSERT_MEMBERSHIPS", UPSERT_MEMBERSHIPS),
    ("UPSERT_MEMBERSHIPS_DRY_RUN", UPSERT_MEMBERSHIPS_DRY_RUN),
    ("USER_HOLDERS", USER_HOLDERS),
    ("ORG_HOLDERS", ORG_HOLDERS),
    ("MEMBERSHIP_HOLDERS", MEMBERSHIP_HOLDERS),
    ("NOTIFY", NOTIFY),
];

#[cfg(test)]
mod tests {
    use clerk_sync_core::mirror::Rank;

    #[test]
    fn the_placeholder_rank_in_the_statements_is_the_models() {
        assert_eq!(placeholder_rank!(), Rank::Placeholder.as_i16().to_string());
    }

    #[test]
    fn the_dry_run_differs_only_by_the_lock() {
        assert_eq!(
            super::UPSERT_MEMBERSHIPS.replace("FOR KEY SHARE OF u, o NOWAIT", ""),
            super::UPSERT_MEMBERSHIPS_DRY_RUN
        );
    }
}
