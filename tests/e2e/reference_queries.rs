//! The reference-architecture queries (docs/reference-queries.sql) against synced tables, and the
//! Prisma schema (deploy/prisma/schema.prisma) against the migrations.

use std::collections::BTreeMap;

use clerk_sync_core::{ClerkEvent, EventId};
use clerk_sync_worker::apply::apply_all;
use sqlx::Row;

use crate::harness::{fixture, TestDb};

fn queries() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/reference-queries.sql"
    ))
    .expect("docs/reference-queries.sql");
    let mut out = BTreeMap::new();
    for block in text.split("-- name: ").skip(1) {
        let (name, body) = block.split_once('\n').expect("named block");
        out.insert(name.trim().to_owned(), body.to_owned());
    }
    out
}

async fn synced_fixtures(db: &TestDb) -> anyhow::Result<()> {
    let names = [
        "user.created.json",
        "organization.created.json",
        "organizationMembership.created.json",
    ];
    let events: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            ClerkEvent::decode(EventId::parse(format!("msg_{i}")).expect("id"), &fixture(n))
                .expect("decodes")
        })
        .collect();
    apply_all(&db.pool, &events).await?;
    Ok(())
}

const USER: &str = "user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a";
const ORG: &str = "org_2nG1hT5yUq8wE3rZ6xC0vB7nM4k";

#[tokio::test]
async fn the_reference_architecture_queries_work_against_the_synced_tables() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    synced_fixtures(&db).await?;
    let q = queries();

    let user = sqlx::query(&q["user_by_clerk_id"])
        .bind(USER)
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        user.get::<Option<String>, _>("email").as_deref(),
        Some("alice.moreau@example.com")
    );

    let members = sqlx::query(&q["organization_live_members"])
        .bind(ORG)
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].get::<String, _>("role"), "org:admin");

    let orgs = sqlx::query(&q["user_organizations"])
        .bind(USER)
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        orgs[0].get::<Option<String>, _>("name").as_deref(),
        Some("Acme Robotics")
    );

    // The application's own table, keyed by organization and referencing users by internal id.
    sqlx::query("CREATE TABLE projects (id int PRIMARY KEY, org_id text NOT NULL, owner_id text REFERENCES users(id), title text)")
        .execute(&db.pool)
        .await?;
    sqlx::query("INSERT INTO projects SELECT 1, $1, id, 'Roadmap' FROM users WHERE clerk_id = $2")
        .bind(ORG)
        .bind(USER)
        .execute(&db.pool)
        .await?;
    let visible = sqlx::query(&q["tenant_scoped_read"])
        .bind(ORG)
        .bind(USER)
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(visible.len(), 1);
    let outsider = sqlx::query(&q["tenant_scoped_read"])
        .bind(ORG)
        .bind("user_other")
        .fetch_all(&db.pool)
        .await?;
    assert!(outsider.is_empty());

    // Deleting the user keeps the application's foreign key valid and hides the user.
    let deleted = ClerkEvent::decode(EventId::parse("msg_d")?, &fixture("user.deleted.json"))?;
    apply_all(&db.pool, &[deleted]).await?;
    assert!(sqlx::query(&q["user_by_clerk_id"])
        .bind(USER)
        .fetch_optional(&db.pool)
        .await?
        .is_none());
    assert!(sqlx::query(&q["organization_live_members"])
        .bind(ORG)
        .fetch_all(&db.pool)
        .await?
        .is_empty());
    assert_eq!(
        db.count("SELECT count(*) FROM projects p JOIN users u ON u.id = p.owner_id")
            .await,
        1
    );
    Ok(())
}

/// (table → column → nullable) as the Prisma schema declares it.
fn prisma_columns() -> BTreeMap<String, BTreeMap<String, bool>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prisma/schema.prisma"
    ))
    .expect("deploy/prisma/schema.prisma");
    let models: Vec<&str> = text.split("\nmodel ").skip(1).collect();
    let model_names: Vec<&str> = models
        .iter()
        .filter_map(|m| m.split_whitespace().next())
        .collect();
    let mut out = BTreeMap::new();
    for model in models {
        let body = model.split("\n}").next().unwrap_or_default();
        let table = body
            .split("@@map(\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("every model maps to a table");
        let mut columns = BTreeMap::new();
        for line in body.lines().skip(1) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [field, ty, ..] = parts.as_slice() else {
                continue;
            };
            if field.starts_with("@@") || field.starts_with("//") {
                continue;
            }
            let base = ty.trim_end_matches(['?', '[', ']']);
            if model_names.contains(&base) {
                continue; // a relation, not a column
            }
            let column = line
                .split("@map(\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or(field);
            columns.insert(column.to_owned(), ty.ends_with('?'));
        }
        out.insert(table.to_owned(), columns);
    }
    out
}

#[tokio::test]
async fn the_prisma_schema_matches_the_migrated_tables() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut actual: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT table_name::text, column_name::text, is_nullable = 'YES' AS nullable
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name IN ('users', 'organizations', 'org_memberships')",
    )
    .fetch_all(&db.pool)
    .await?;
    for row in rows {
        actual
            .entry(row.get("table_name"))
            .or_default()
            .insert(row.get("column_name"), row.get("nullable"));
    }
    assert_eq!(
        prisma_columns(),
        actual,
        "deploy/prisma/schema.prisma has drifted from migrations/"
    );
    Ok(())
}
