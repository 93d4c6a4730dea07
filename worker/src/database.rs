//! How clerk-sync reaches Postgres: the rule that a database off loopback must prove who it is,
//! and the worker's pool (a lock timeout on every session).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::{Error, Result};

/// Refuses a database URL that would talk to a host off loopback without checking who answers:
/// sqlx's default `prefer` falls back to plain text, and `require` encrypts to whoever answers.
/// `setting` names the URL's setting in the one-line refusal.
pub fn check_verified(
    options: &PgConnectOptions,
    setting: &str,
    allow: bool,
) -> Result<(), String> {
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let verified = matches!(
        options.get_ssl_mode(),
        PgSslMode::VerifyFull | PgSslMode::VerifyCa
    );
    if local || verified || allow {
        return Ok(());
    }
    Err(format!(
        "{setting}: expected sslmode=verify-full (with sslrootcert=<the server's CA> unless the system trusts it) for a database off loopback; set DATABASE_ALLOW_UNVERIFIED=true to connect unverified on a network you trust"
    ))
}

/// Long enough for any batch of another worker to end (seconds at most), short enough that a
/// lock held by something else shows in the logs and metrics twice a minute.
pub const DEFAULT_LOCK_TIMEOUT_MS: u32 = 30_000;

/// Where the worker's database is and how it is reached (`DATABASE_*`).
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub url: clerk_sync_core::Secret,
    pub max_connections: u32,
    /// Longest a statement waits for a row lock, in milliseconds; 0 waits without limit.
    pub lock_timeout_ms: u32,
    pub allow_unverified: bool,
}

impl DatabaseSettings {
    /// A pool whose every session has the lock timeout. Set on each session rather than in the
    /// startup packet, which poolers such as PgBouncer refuse; migrations lift it on their own
    /// connection (see `migrate`).
    pub async fn pool(&self) -> Result<PgPool> {
        let options: PgConnectOptions = self.url.expose().parse().map_err(|e: sqlx::Error| {
            Error::Database(e).within("DATABASE_URL: expected a postgres:// URL")
        })?;
        check_verified(&options, "DATABASE_URL", self.allow_unverified).map_err(Error::Refused)?;
        let lock_timeout = self.lock_timeout_ms;
        if i32::try_from(lock_timeout).is_err() {
            return Err(Error::Setting {
                setting: "DATABASE_LOCK_TIMEOUT_MS",
                expected: format!("at most {} (milliseconds; 0 waits without limit)", i32::MAX),
            });
        }
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query(&format!("SET lock_timeout = {lock_timeout}"))
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| Error::Database(e).within("DATABASE_URL: cannot connect to the database"))
    }
}
