use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clerk_sync_core::mirror::{MembershipRow, OrgRow, UserRow};
use clerk_sync_core::{JsonText, MembershipId, Millis, OrgId, UserId};
use clerk_sync_local::TempPostgres;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};

use super::unique;

/// A freshly migrated database of its own, dropped with the test.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    name: String,
    admin_url: String,
    // Kept last: the server (when the test started its own) outlives the pool.
    server: Option<TempPostgres>,
}

impl TestDb {
    pub async fn new() -> Result<Self> {
        let db = Self::unmigrated().await?;
        clerk_sync_worker::migrate(&db.pool).await?;
        Ok(db)
    }

    /// A database of its own with no schema at all: what a worker meets before the migration
    /// Job has run.
    pub async fn unmigrated() -> Result<Self> {
        match std::env::var("DATABASE_URL") {
            Ok(url) => Self::on(url, None).await,
            Err(_) => Self::private_unmigrated().await,
        }
    }

    /// On a Postgres server of the test's own, which it may stop and start again.
    pub async fn private() -> Result<Self> {
        let db = Self::private_unmigrated().await?;
        clerk_sync_worker::migrate(&db.pool).await?;
        Ok(db)
    }

    async fn private_unmigrated() -> Result<Self> {
        let pg = tokio::task::spawn_blocking(TempPostgres::start).await??;
        Self::on(pg.url(), Some(pg)).await
    }

    /// The database's name (for `ALTER DATABASE`, `pg_stat_activity`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection as the server's superuser, outside the test's pool.
    pub async fn admin(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }

    async fn on(admin_url: String, server: Option<TempPostgres>) -> Result<Self> {
        let name = unique("clerk_sync_test_");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await?;
        Ok(TestDb {
            pool,
            url,
            name,
            admin_url,
            server,
        })
    }

    /// The throwaway server, when this test started one (fault tests stop it).
    pub fn server(&self) -> Option<&TempPostgres> {
        self.server.as_ref()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1)
    }

    /// The tables in the reference model's terms (internal ids left out).
    pub async fn users(&self) -> Result<BTreeMap<UserId, UserRow>> {
        let rows =
            sqlx::query(&format!(
            "SELECT clerk_id, email, name, first_name, last_name, username, image_url, external_id,
                    public_metadata, {}, {}, {} FROM users",
            ms("created_at"), ms("updated_at"), ms("deleted_at")
        ))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let row = UserRow {
                    clerk_id: UserId::parse(r.get::<String, _>("clerk_id"))?,
                    email: r.get("email"),
                    name: r.get("name"),
                    first_name: r.get("first_name"),
                    last_name: r.get("last_name"),
                    username: r.get("username"),
                    image_url: r.get("image_url"),
                    external_id: r.get("external_id"),
                    public_metadata: JsonText::from_value(&r.get("public_metadata")),
                    created_at: Millis::from_raw(r.get("created_at_ms")),
                    updated_at: Millis::from_raw(r.get("updated_at_ms")),
                    deleted_at: r
                        .get::<Option<i64>, _>("deleted_at_ms")
                        .map(Millis::from_raw),
                };
                Ok((row.clerk_id.clone(), row))
            })
            .collect()
    }

    pub async fn orgs(&self) -> Result<BTreeMap<OrgId, OrgRow>> {
        let rows = sqlx::query(&format!(
            "SELECT clerk_id, name, slug, image_url, public_metadata, {}, {}, {} FROM organizations",
            ms("created_at"), ms("updated_at"), ms("deleted_at")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let row = OrgRow {
                    clerk_id: OrgId::parse(r.get::<String, _>("clerk_id"))?,
                    name: r.get("name"),
                    slug: r.get("slug"),
                    image_url: r.get("image_url"),
                    public_metadata: JsonText::from_value(&r.get("public_metadata")),
                    created_at: Millis::from_raw(r.get("created_at_ms")),
                    updated_at: Millis::from_raw(r.get("updated_at_ms")),
                    deleted_at: r
                        .get::<Option<i64>, _>("deleted_at_ms")
                        .map(Millis::from_raw),
                };
                Ok((row.clerk_id.clone(), row))
            })
            .collect()
    }

    pub async fn memberships(&self) -> Result<BTreeMap<(UserId, OrgId), MembershipRow>> {
        let rows = sqlx::query(&format!(
            "SELECT m.clerk_id, u.clerk_id AS user_clerk_id, m.org_id, m.role, m.permissions,
                    {}, {}, {}
             FROM org_memberships m JOIN users u ON u.id = m.user_id",
            ms("m.created_at"),
            ms("m.updated_at"),
            ms("m.deleted_at")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let row = MembershipRow {
                    clerk_id: MembershipId::parse(r.get::<String, _>("clerk_id"))?,
                    user_id: UserId::parse(r.get::<String, _>("user_clerk_id"))?,
                    org_id: OrgId::parse(r.get::<String, _>("org_id"))?,
                    role: r.get("role"),
                    permissions: r.get("permissions"),
                    created_at: Millis::from_raw(r.get("created_at_ms")),
                    updated_at: Millis::from_raw(r.get("updated_at_ms")),
                    deleted_at: r
                        .get::<Option<i64>, _>("deleted_at_ms")
                        .map(Millis::from_raw),
                };
                Ok(((row.user_id.clone(), row.org_id.clone()), row))
            })
            .collect()
    }

    /// Empties the synced tables (property tests reuse one database across cases).
    pub async fn truncate(&self) -> Result<()> {
        sqlx::query("TRUNCATE org_memberships, users, organizations")
            .execute(&self.pool)
            .await
            .context("truncate")?;
        Ok(())
    }
}

fn ms(column: &str) -> String {
    let alias = column.rsplit('.').next().unwrap_or(column);
    format!("(extract(epoch from {column}) * 1000)::bigint AS {alias}_ms")
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let root = match base.rfind('/') {
        Some(i) if base[..i].contains("//") && i > base.find("//").unwrap_or(0) + 1 => &base[..i],
        _ => base,
    };
    format!("{root}/{name}{query}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.server.is_some() {
            return; // the whole throwaway server goes with it
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Async work in Drop: a short-lived runtime on its own thread. The test's own pool belongs
        // to the test's runtime, blocked right here, so it is left alone: FORCE ends its sessions.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let drop_it = async {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                };
                match tokio::time::timeout(std::time::Duration::from_secs(20), drop_it).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("could not drop test database {name}: {e}"),
                    Err(_) => eprintln!("dropping test database {name} timed out"),
                }
            });
        })
        .join();
    }
}
