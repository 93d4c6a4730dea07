//! The cases the worker must get right, each through the real database (apply path, no broker).

use clerk_sync_core::{ClerkEvent, EventId, EventMeta};
use clerk_sync_worker::apply::{apply_all, Outcome};
use serde_json::{json, Value};

use crate::harness::TestDb;

pub(crate) const T: i64 = 1_754_560_800_000;

fn event(id: &str, event_type: &str, timestamp: i64, data: Value) -> (EventMeta, ClerkEvent) {
    let body = json!({"type": event_type, "object": "event", "timestamp": timestamp, "data": data});
    ClerkEvent::decode(EventId::parse(id).expect("id"), body.to_string().as_bytes())
        .expect("decodes")
}

fn user_data(id: &str, updated_at: i64, first_name: &str) -> Value {
    json!({
        "id": id, "object": "user", "first_name": first_name, "last_name": "Moreau",
        "username": "alice", "image_url": "https://img/1", "external_id": "ext_1",
        "email_addresses": [
            {"id": "idn_1", "email_address": "first@example.com"},
            {"id": "idn_2", "email_address": "primary@example.com"}
        ],
        "primary_email_address_id": "idn_2",
        "public_metadata": {"plan": "pro"},
        "created_at": T, "updated_at": updated_at
    })
}

pub(crate) fn user(
    id: &str,
    kind: &str,
    updated_at: i64,
    first_name: &str,
) -> (EventMeta, ClerkEvent) {
    event(
        &format!("msg_{kind}_{updated_at}"),
        &format!("user.{kind}"),
        updated_at + 1,
        user_data(id, updated_at, first_name),
    )
}

pub(crate) fn user_deleted(id: &str, at: i64) -> (EventMeta, ClerkEvent) {
    event(
        &format!("msg_del_{at}"),
        "user.deleted",
        at,
        json!({"id": id, "object": "user", "deleted": true}),
    )
}

fn org_data(id: &str, updated_at: i64, name: &str) -> Value {
    json!({"id": id, "object": "organization", "name": name, "slug": "acme", "image_url": null,
           "public_metadata": {}, "created_at": T, "updated_at": updated_at})
}

pub(crate) fn org(id: &str, kind: &str, updated_at: i64, name: &str) -> (EventMeta, ClerkEvent) {
    event(
        &format!("msg_org_{kind}_{updated_at}"),
        &format!("organization.{kind}"),
        updated_at + 1,
        org_data(id, updated_at, name),
    )
}

pub(crate) fn org_deleted(id: &str, at: i64) -> (EventMeta, ClerkEvent) {
    event(
        &format!("msg_orgdel_{at}"),
        "organization.deleted",
        at,
        json!({"id": id, "object": "organization", "slug": "acme", "deleted": true}),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn membership(
    mem_id: &str,
    kind: &str,
    user_id: &str,
    org_id: &str,
    role: &str,
    created_at: i64,
    updated_at: i64,
    ts: i64,
) -> (EventMeta, ClerkEvent) {
    event(
        &format!("msg_mem_{mem_id}_{kind}_{ts}"),
        &format!("organizationMembership.{kind}"),
        ts,
        json!({
            "id": mem_id, "object": "organization_membership", "role": role, "permissions": ["org:sys_memberships:read"],
            "organization": org_data(org_id, T, "Embedded Org"),
            "public_user_data": {"user_id": user_id, "identifier": "stub@example.com", "first_name": "Stub", "last_name": null, "image_url": "https://img/stub"},
            "created_at": created_at, "updated_at": updated_at
        }),
    )
}

async fn apply(db: &TestDb, events: &[(EventMeta, ClerkEvent)]) -> Vec<Outcome> {
    apply_all(&db.pool, events).await.expect("applies")
}

async fn one_user(db: &TestDb) -> (Option<String>, Option<String>, Option<String>, bool) {
    sqlx::query_as("SELECT first_name, email, username, deleted_at IS NOT NULL FROM users")
        .fetch_one(&db.pool)
        .await
        .expect("one user")
}

#[tokio::test]
async fn an_update_before_its_create_wins_and_the_late_create_changes_nothing() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let outcomes = apply(
        &db,
        &[
            user("user_1", "updated", T + 10, "New"),
            user("user_1", "created", T, "Old"),
        ],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Applied, Outcome::Stale]);
    assert_eq!(one_user(&db).await.0.as_deref(), Some("New"));
    Ok(())
}

#[tokio::test]
async fn a_stale_update_after_a_newer_one_changes_nothing() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            user("user_1", "updated", T + 20, "Newest"),
            user("user_1", "updated", T + 10, "Older"),
        ],
    )
    .await;
    assert_eq!(one_user(&db).await.0.as_deref(), Some("Newest"));
    Ok(())
}

#[tokio::test]
async fn equal_updated_at_values_are_settled_by_envelope_time_then_event_id() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let mut later = user("user_1", "updated", T + 10, "Later");
    later.0.timestamp = clerk_sync_core::Millis::from_raw(T + 50);
    let earlier = user("user_1", "updated", T + 10, "Earlier");
    apply(&db, &[later.clone(), earlier.clone()]).await;
    assert_eq!(one_user(&db).await.0.as_deref(), Some("Later"));
    db.truncate().await?;
    apply(&db, &[earlier, later]).await;
    assert_eq!(one_user(&db).await.0.as_deref(), Some("Later"));
    Ok(())
}

#[tokio::test]
async fn a_duplicate_delivery_changes_nothing() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let e = user("user_1", "created", T, "Alice");
    let outcomes = apply(&db, &[e.clone(), e]).await;
    assert_eq!(outcomes, vec![Outcome::Applied, Outcome::Duplicate]);
    Ok(())
}

#[tokio::test]
async fn each_event_of_a_batch_is_counted_applied_stale_or_duplicate_and_a_redelivered_batch_only_duplicate(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let created = user("user_1", "created", T, "Alice");
    let updated = user("user_1", "updated", T + 10, "Alicia");
    let org_created = org("org_1", "created", T, "Acme");
    let batch = [
        created.clone(),
        updated.clone(),
        updated.clone(),
        org_created.clone(),
    ];
    let first = apply(&db, &batch).await;
    assert_eq!(
        first,
        vec![
            Outcome::Stale,
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Applied
        ]
    );
    let again = apply(&db, &batch).await;
    assert_eq!(
        again,
        vec![
            Outcome::Stale,
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::Duplicate
        ]
    );
    Ok(())
}

#[tokio::test]
async fn updates_after_a_user_deletion_never_resurrect_it() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            user("user_1", "created", T, "Alice"),
            user_deleted("user_1", T + 100),
            user("user_1", "updated", T + 50, "Late"),
        ],
    )
    .await;
    let (first, email, username, deleted) = one_user(&db).await;
    assert!(deleted);
    assert_eq!((first, email, username), (None, None, None));
    Ok(())
}

#[tokio::test]
#[allow(clippy::type_complexity)]
async fn a_deleted_user_is_a_tombstone_with_its_personal_data_erased() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            user("user_1", "created", T, "Alice"),
            user_deleted("user_1", T + 100),
        ],
    )
    .await;
    let row: (String, String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, Value, bool) = sqlx::query_as(
        "SELECT id, clerk_id, email, name, first_name, last_name, image_url, public_metadata, deleted_at IS NOT NULL FROM users",
    )
    .fetch_one(&db.pool)
    .await?;
    assert!(!row.0.is_empty());
    assert_eq!(row.1, "user_1");
    assert_eq!(
        (row.2, row.3, row.4, row.5, row.6),
        (None, None, None, None, None)
    );
    assert_eq!(row.7, json!({}));
    assert!(row.8);
    Ok(())
}

#[tokio::test]
async fn a_deletion_that_arrives_first_leaves_a_tombstone_the_late_create_cannot_fill_with_personal_data(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            user_deleted("user_1", T + 100),
            user("user_1", "created", T, "Alice"),
        ],
    )
    .await;
    let (first, email, _, deleted) = one_user(&db).await;
    assert!(deleted);
    assert_eq!((first, email), (None, None));
    let created: i64 =
        sqlx::query_scalar("SELECT (extract(epoch from created_at) * 1000)::bigint FROM users")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(
        created, T,
        "non-personal times still follow the newest version"
    );
    Ok(())
}

#[tokio::test]
async fn updates_after_an_organization_deletion_never_resurrect_it() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            org("org_1", "created", T, "Acme"),
            org_deleted("org_1", T + 100),
            org("org_1", "updated", T + 50, "Acme 2"),
        ],
    )
    .await;
    let (name, deleted): (Option<String>, bool) =
        sqlx::query_as("SELECT name, deleted_at IS NOT NULL FROM organizations")
            .fetch_one(&db.pool)
            .await?;
    assert!(deleted);
    assert_eq!(
        name.as_deref(),
        Some("Acme 2"),
        "a deleted organization keeps its last known name"
    );
    Ok(())
}

#[tokio::test]
async fn a_membership_before_its_user_creates_a_stub_the_real_user_then_fills() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    apply(
        &db,
        &[membership(
            "orgmem_1",
            "created",
            "user_1",
            "org_1",
            "org:member",
            T,
            T,
            T + 5,
        )],
    )
    .await;
    let stub = one_user(&db).await;
    assert_eq!(
        (stub.0.as_deref(), stub.1.as_deref()),
        (Some("Stub"), Some("stub@example.com"))
    );
    apply(&db, &[user("user_1", "created", T - 100, "Alice")]).await;
    let real = one_user(&db).await;
    assert_eq!(
        (real.0.as_deref(), real.1.as_deref()),
        (Some("Alice"), Some("primary@example.com"))
    );
    // A later membership event never overwrites real user data with its stub.
    apply(
        &db,
        &[membership(
            "orgmem_1",
            "updated",
            "user_1",
            "org_1",
            "org:admin",
            T,
            T + 50,
            T + 60,
        )],
    )
    .await;
    assert_eq!(one_user(&db).await.0.as_deref(), Some("Alice"));
    Ok(())
}

#[tokio::test]
async fn a_membership_before_its_organization_creates_it_from_the_embedded_copy(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[membership(
            "orgmem_1",
            "created",
            "user_1",
            "org_1",
            "org:member",
            T,
            T,
            T + 5,
        )],
    )
    .await;
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM organizations WHERE clerk_id = 'org_1'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(name.as_deref(), Some("Embedded Org"));
    apply(&db, &[org("org_1", "updated", T, "Real Org")]).await;
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM organizations")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        name.as_deref(),
        Some("Real Org"),
        "the organization's own event outranks the embedded copy"
    );
    Ok(())
}

#[tokio::test]
async fn rejoining_revives_the_row_with_the_new_id_and_a_late_event_for_the_old_membership_changes_nothing(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            membership(
                "orgmem_old",
                "created",
                "user_1",
                "org_1",
                "org:admin",
                T,
                T,
                T + 1,
            ),
            membership(
                "orgmem_old",
                "deleted",
                "user_1",
                "org_1",
                "org:admin",
                T,
                T,
                T + 100,
            ),
            membership(
                "orgmem_new",
                "created",
                "user_1",
                "org_1",
                "org:member",
                T + 200,
                T + 200,
                T + 201,
            ),
            membership(
                "orgmem_old",
                "updated",
                "user_1",
                "org_1",
                "org:admin",
                T,
                T + 50,
                T + 51,
            ),
        ],
    )
    .await;
    let (clerk_id, role, deleted): (String, String, bool) =
        sqlx::query_as("SELECT clerk_id, role, deleted_at IS NOT NULL FROM org_memberships")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(
        (clerk_id.as_str(), role.as_str(), deleted),
        ("orgmem_new", "org:member", false)
    );
    Ok(())
}

#[tokio::test]
async fn deleting_an_organization_ends_its_memberships_without_membership_events(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            membership(
                "orgmem_1",
                "created",
                "user_1",
                "org_1",
                "org:admin",
                T,
                T,
                T + 1,
            ),
            membership(
                "orgmem_2",
                "created",
                "user_2",
                "org_1",
                "org:member",
                T,
                T,
                T + 2,
            ),
            org_deleted("org_1", T + 100),
        ],
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM org_memberships WHERE deleted_at IS NOT NULL")
            .await,
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_membership_event_older_than_its_organizations_deletion_stays_deleted(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            org_deleted("org_1", T + 100),
            membership(
                "orgmem_1",
                "updated",
                "user_1",
                "org_1",
                "org:admin",
                T,
                T + 50,
                T + 51,
            ),
        ],
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM org_memberships WHERE deleted_at IS NOT NULL")
            .await,
        1
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_user_ends_their_memberships_and_late_membership_events_stay_deleted(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            membership(
                "orgmem_1",
                "created",
                "user_1",
                "org_1",
                "org:admin",
                T,
                T,
                T + 1,
            ),
            user_deleted("user_1", T + 100),
            membership(
                "orgmem_2",
                "created",
                "user_1",
                "org_2",
                "org:member",
                T + 10,
                T + 10,
                T + 11,
            ),
        ],
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM org_memberships WHERE deleted_at IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL AND first_name IS NULL")
            .await,
        1
    );
    Ok(())
}

#[tokio::test]
async fn the_same_entity_several_times_in_one_batch_applies_with_the_newest_winning(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply(
        &db,
        &[
            user("user_1", "updated", T + 30, "Third"),
            user("user_1", "created", T, "First"),
            user("user_1", "updated", T + 20, "Second"),
            user("user_1", "updated", T + 30, "Third"),
        ],
    )
    .await;
    assert_eq!(one_user(&db).await.0.as_deref(), Some("Third"));
    Ok(())
}

#[tokio::test]
async fn the_primary_email_is_the_one_named_by_primary_email_address_id_and_phone_only_users_have_none(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut phone_only = user_data("user_2", T, "Phone");
    phone_only["email_addresses"] = json!([]);
    phone_only["primary_email_address_id"] = Value::Null;
    apply(
        &db,
        &[
            user("user_1", "created", T, "Alice"),
            event("msg_p", "user.created", T + 1, phone_only),
        ],
    )
    .await;
    let emails: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT clerk_id, email FROM users ORDER BY clerk_id")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(
        emails,
        vec![
            ("user_1".into(), Some("primary@example.com".into())),
            ("user_2".into(), None)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn timestamps_in_seconds_are_read_as_seconds() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut data = user_data("user_1", T, "Alice");
    data["created_at"] = json!(T / 1000);
    data["updated_at"] = json!(T / 1000);
    apply(&db, &[event("msg_s", "user.created", T / 1000, data)]).await;
    let created: i64 =
        sqlx::query_scalar("SELECT (extract(epoch from created_at) * 1000)::bigint FROM users")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(created, T);
    Ok(())
}

#[tokio::test]
async fn ignored_event_types_change_no_table() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let outcomes = apply(
        &db,
        &[event(
            "msg_i",
            "session.created",
            T,
            json!({"id": "sess_1", "user_id": "user_1"}),
        )],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Ignored]);
    assert_eq!(
        db.count("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM organizations)")
            .await,
        0
    );
    Ok(())
}
