//! The drift between Clerk's listings and the synced tables, measured in the database: every
//! listed object goes into a session-local table as it is read, and three statements per table
//! find what is missing here, what is older here than in Clerk, and what is live here but was
//! not listed (the candidates for pruning). All of backfill's SQL is here.

use crate::{Error, Result};
use clerk_sync_core::Millis;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use clerk_sync_core::Secret;

/// Ids listed per kind in a report (the counts are always whole).
pub const EXAMPLES: usize = 100;

/// Where the listed objects are kept for the session; `resource` is the index in
/// [`super::RESOURCES`].
const CREATE_LISTED: &str = r#"CREATE TEMP TABLE clerk_sync_listed (
    resource   smallint NOT NULL,
    clerk_id   text COLLATE "C" NOT NULL,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    org_id     text,
    user_id    text
)"#;

const INSERT_LISTED: &str = "INSERT INTO clerk_sync_listed
    SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])";

// Temporary tables are never analysed by autovacuum: without statistics the anti-joins below
// would be planned for an empty table.
const INDEX_LISTED: &str = "CREATE INDEX ON clerk_sync_listed (resource, clerk_id);
    CREATE INDEX ON clerk_sync_listed (resource, org_id, user_id);
    ANALYZE clerk_sync_listed";

/// One table's three questions, and how many of its rows are live.
pub struct TableSql {
    pub table: &'static str,
    pub live: &'static str,
    /// Listed, and no row here.
    pub missing: &'static str,
    /// Listed, and the row here is older than the listed object.
    pub stale: &'static str,
    /// Live here, unchanged since the listing began (`$1`), and not listed.
    pub unlisted: &'static str,
}

/// In [`super::RESOURCES`] order.
pub const TABLES: [TableSql; 3] = [
    TableSql {
        table: "organizations",
        live: "SELECT count(*) FROM organizations WHERE deleted_at IS NULL",
        missing: "SELECT l.clerk_id FROM clerk_sync_listed l WHERE l.resource = 0
            AND NOT EXISTS (SELECT 1 FROM organizations o WHERE o.clerk_id = l.clerk_id)
            ORDER BY 1",
        stale: "SELECT o.clerk_id FROM clerk_sync_listed l JOIN organizations o ON o.clerk_id = l.clerk_id
            WHERE l.resource = 0 AND o.deleted_at IS NULL
              AND (o.sync_rank < 1 OR o.sync_version_ms < l.updated_ms)
            ORDER BY 1",
        unlisted: "SELECT o.clerk_id FROM organizations o
            WHERE o.deleted_at IS NULL AND o.synced_at < $1::timestamptz
              AND NOT EXISTS (SELECT 1 FROM clerk_sync_listed l WHERE l.resource = 0 AND l.clerk_id = o.clerk_id)
            ORDER BY 1",
    },
    TableSql {
        table: "users",
        live: "SELECT count(*) FROM users WHERE deleted_at IS NULL",
        missing: "SELECT l.clerk_id FROM clerk_sync_listed l WHERE l.resource = 1
            AND NOT EXISTS (SELECT 1 FROM users u WHERE u.clerk_id = l.clerk_id)
            ORDER BY 1",
        stale: "SELECT u.clerk_id FROM clerk_sync_listed l JOIN users u ON u.clerk_id = l.clerk_id
            WHERE l.resource = 1 AND u.deleted_at IS NULL
              AND (u.sync_rank < 1 OR u.sync_version_ms < l.updated_ms)
            ORDER BY 1",
        unlisted: "SELECT u.clerk_id FROM users u
            WHERE u.deleted_at IS NULL AND u.synced_at < $1::timestamptz
              AND NOT EXISTS (SELECT 1 FROM clerk_sync_listed l WHERE l.resource = 1 AND l.clerk_id = u.clerk_id)
            ORDER BY 1",
    },
    // A membership row is one (user, organization) pair; a listed membership of a newer
    // generation (left and re-joined) than the row makes the row stale.
    TableSql {
        table: "org_memberships",
        live: "SELECT count(*) FROM org_memberships WHERE deleted_at IS NULL",
        missing: "SELECT l.clerk_id FROM clerk_sync_listed l WHERE l.resource = 2
            AND NOT EXISTS (SELECT 1 FROM org_memberships m JOIN users u ON u.id = m.user_id
                            WHERE m.org_id = l.org_id AND u.clerk_id = l.user_id)
            ORDER BY 1",
        stale: "SELECT l.clerk_id FROM clerk_sync_listed l
            JOIN users u ON u.clerk_id = l.user_id
            JOIN org_memberships m ON m.user_id = u.id AND m.org_id = l.org_id
            WHERE l.resource = 2
              AND ((m.sync_created_ms, m.clerk_id) < (l.created_ms, l.clerk_id)
                   OR (m.clerk_id = l.clerk_id AND m.deleted_at IS NULL AND m.sync_version_ms < l.updated_ms))
            ORDER BY 1",
        unlisted: "SELECT m.clerk_id FROM org_memberships m JOIN users u ON u.id = m.user_id
            WHERE m.deleted_at IS NULL AND m.synced_at < $1::timestamptz
              AND NOT EXISTS (SELECT 1 FROM clerk_sync_listed l
                              WHERE l.resource = 2 AND l.org_id = m.org_id AND l.user_id = u.clerk_id)
            ORDER BY 1",
    },
];

/// The organization and user of live memberships, by membership id.
const MEMBERSHIP_OWNERS: &str = "SELECT m.clerk_id, m.org_id, u.clerk_id FROM org_memberships m
    JOIN users u ON u.id = m.user_id
    WHERE m.deleted_at IS NULL AND m.clerk_id = ANY($1)";

/// What a synthetic `organizationMembership.deleted` carries, from the rows themselves, so
/// that the stub rows a membership event writes change nothing. Times in milliseconds.
const MEMBERSHIP_EVENT_DATA: &str = r#"SELECT m.clerk_id AS id, m.role, m.permissions,
        m.sync_created_ms AS created_ms, m.sync_version_ms AS updated_ms,
        u.clerk_id AS user_id, u.first_name, u.last_name, u.image_url, u.email,
        m.org_id, o.name AS org_name, o.slug AS org_slug, o.image_url AS org_image_url,
        coalesce(o.public_metadata::text, '{}') AS org_public_metadata,
        (extract(epoch FROM coalesce(o.created_at, m.created_at)) * 1000)::bigint AS org_created_ms,
        (extract(epoch FROM coalesce(o.updated_at, m.updated_at)) * 1000)::bigint AS org_updated_ms
    FROM org_memberships m JOIN users u ON u.id = m.user_id
    LEFT JOIN organizations o ON o.clerk_id = m.org_id
    WHERE m.clerk_id = $1 AND m.deleted_at IS NULL"#;

/// A live membership's rows, as a synthetic `organizationMembership.deleted` carries them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MembershipEventRow {
    pub id: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub user_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
    pub email: Option<String>,
    pub org_id: String,
    pub org_name: Option<String>,
    pub org_slug: Option<String>,
    pub org_image_url: Option<String>,
    /// JSON text, never parsed: stored metadata may be deeper than a parser allows.
    pub org_public_metadata: String,
    pub org_created_ms: i64,
    pub org_updated_ms: i64,
}

/// A session on the synced database, holding the listed objects.
pub struct DriftDb {
    conn: PgConnection,
    /// The database's clock when the listing began (as Postgres prints it, so that it compares
    /// exactly with `synced_at`): rows changed since are left alone.
    started_at: String,
    /// The same moment in milliseconds: the date of a synthetic deletion.
    pub started_ms: i64,
}

/// One listed object as the drift queries need it.
#[derive(Debug, Default)]
struct Listed {
    resource: Vec<i16>,
    clerk_id: Vec<String>,
    created_ms: Vec<i64>,
    updated_ms: Vec<i64>,
    org_id: Vec<Option<String>>,
    user_id: Vec<Option<String>>,
}

impl DriftDb {
    pub async fn open(url: &Secret) -> Result<Self> {
        let options: PgConnectOptions = url.expose().parse().map_err(|source| Error::Database {
            what: "DATABASE_URL: expected a postgres:// URL".to_owned(),
            source,
        })?;
        let mut conn = options
            .application_name("clerk-sync backfill")
            .disable_statement_logging()
            .connect()
            .await
            .map_err(|source| Error::Database {
                what: "DATABASE_URL: cannot connect to the database".to_owned(),
                source,
            })?;
        sqlx::raw_sql(CREATE_LISTED)
            .execute(&mut conn)
            .await
            .map_err(|source| Error::Database {
                what: "DATABASE_URL: the drift check keeps the listing in a temporary table, which this database refuses (a read-only database or replica? point it at the primary)".to_owned(),
                source,
            })?;
        let (started_at, started_ms) =
            sqlx::query_as("SELECT now()::text, (extract(epoch FROM now()) * 1000)::bigint")
                .fetch_one(&mut conn)
                .await?;
        Ok(DriftDb {
            conn,
            started_at,
            started_ms,
        })
    }

    /// Keeps a page of the listing of `RESOURCES[resource]`.
    pub async fn add(&mut self, resource: usize, items: &[Value]) -> Result<()> {
        let mut listed = Listed::default();
        for item in items {
            let clerk_id = item["id"]
                .as_str()
                .ok_or_else(|| Error::Api("a listed object without id".to_owned()))?;
            let time = |field: &str| {
                item[field]
                    .as_i64()
                    .map(|t| Millis::from_clerk(t).get())
                    .ok_or_else(|| Error::Api(format!("{clerk_id}: no {field}")))
            };
            listed.resource.push(resource as i16);
            listed.clerk_id.push(clerk_id.to_owned());
            listed.created_ms.push(time("created_at")?);
            listed.updated_ms.push(time("updated_at")?);
            listed
                .org_id
                .push(item["organization"]["id"].as_str().map(str::to_owned));
            listed.user_id.push(
                item["public_user_data"]["user_id"]
                    .as_str()
                    .map(str::to_owned),
            );
        }
        sqlx::query(INSERT_LISTED)
            .bind(listed.resource)
            .bind(listed.clerk_id)
            .bind(listed.created_ms)
            .bind(listed.updated_ms)
            .bind(listed.org_id)
            .bind(listed.user_id)
            .execute(&mut self.conn)
            .await
            .map_err(|source| Error::Database {
                what: "keeping the listed objects".to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Measures every table against what was listed.
    pub async fn measure(&mut self) -> Result<Vec<TableDrift>> {
        sqlx::raw_sql(INDEX_LISTED).execute(&mut self.conn).await?;
        let mut drift = Vec::with_capacity(TABLES.len());
        for sql in &TABLES {
            let live: i64 = sqlx::query_scalar(sql.live)
                .fetch_one(&mut self.conn)
                .await
                .map_err(|source| Error::Database {
                    what: format!(
                        "DATABASE_URL: reading {} (is the database migrated? `clerk-sync migrate`)",
                        sql.table
                    ),
                    source,
                })?;
            let missing: Vec<String> = sqlx::query_scalar(sql.missing)
                .fetch_all(&mut self.conn)
                .await?;
            let stale: Vec<String> = sqlx::query_scalar(sql.stale)
                .fetch_all(&mut self.conn)
                .await?;
            let unlisted: Vec<String> = sqlx::query_scalar(sql.unlisted)
                .bind(&self.started_at)
                .fetch_all(&mut self.conn)
                .await?;
            drift.push(TableDrift {
                table: sql.table,
                live_rows: u64::try_from(live).unwrap_or(0),
                missing: Ids::from(missing),
                stale: Ids::from(stale),
                unlisted,
                deleted: Ids::default(),
            });
        }
        Ok(drift)
    }

    /// `(membership, organization, user)` for each live membership among `ids`.
    pub async fn membership_owners(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(MEMBERSHIP_OWNERS)
            .bind(ids)
            .fetch_all(&mut self.conn)
            .await?)
    }

    pub async fn membership_event_data(&mut self, id: &str) -> Result<Option<MembershipEventRow>> {
        Ok(sqlx::query_as(MEMBERSHIP_EVENT_DATA)
            .bind(id)
            .fetch_optional(&mut self.conn)
            .await?)
    }
}

/// A count of rows and the first of their Clerk ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ids {
    pub count: u64,
    /// In byte order, at most 100 (every id for `deleted`).
    pub ids: Vec<String>,
}

impl From<Vec<String>> for Ids {
    fn from(mut ids: Vec<String>) -> Self {
        let count = ids.len() as u64;
        ids.truncate(EXAMPLES);
        Ids { count, ids }
    }
}

/// One table measured against Clerk.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableDrift {
    pub table: &'static str,
    pub live_rows: u64,
    /// Listed by Clerk, absent here.
    pub missing: Ids,
    /// Here, but older than Clerk's version.
    pub stale: Ids,
    /// Live here, deleted in Clerk (confirmed absent): what `--prune` deletes.
    pub deleted: Ids,
    /// Live here and not listed: what was checked one by one for `deleted`.
    #[serde(skip)]
    pub unlisted: Vec<String>,
}

impl TableDrift {
    pub fn rows(&self) -> u64 {
        self.missing.count + self.stale.count + self.deleted.count
    }
}
