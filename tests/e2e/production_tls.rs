//! Production connections: TLS to Postgres from the URL, and TLS/SASL settings for Kafka passed
//! through to librdkafka (which must have been built with them).

use std::time::Duration;

use clerk_sync::local::TempPostgres;
use clerk_sync_ingest::Publisher;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use sqlx::{Connection, PgConnection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_with_sslmode_require_migrates_over_an_encrypted_connection(
) -> anyhow::Result<()> {
    let pg = tokio::task::spawn_blocking(TempPostgres::start_with_tls).await??;
    let url = format!("{}?sslmode=require", pg.url());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-sync"))
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", &url)
        .output()
        .await?;
    assert!(
        output.status.success(),
        "migrate over TLS failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut conn = PgConnection::connect(&url).await?;
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
    assert!(encrypted);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('users', 'organizations', 'org_memberships')",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(tables, 3);
    Ok(())
}

fn managed_kafka_settings(mechanism: &str) -> Vec<(String, String)> {
    [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", mechanism),
        ("sasl.username", "clerk-sync"),
        ("sasl.password", "not-a-real-password"),
        ("ssl.endpoint.identification.algorithm", "https"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test]
async fn tls_with_sasl_scram_plain_or_oauthbearer_oidc_is_accepted_by_the_producer_and_the_consumer(
) -> anyhow::Result<()> {
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"] {
        let mut settings = managed_kafka_settings(mechanism);
        if mechanism == "OAUTHBEARER" {
            settings.retain(|(k, _)| {
                !k.starts_with("sasl.username") && !k.starts_with("sasl.password")
            });
        }
        // Creating a client validates every property; nothing is contacted yet.
        Publisher::new("127.0.0.1:9", &settings, Duration::from_secs(1))
            .map_err(|e| anyhow::anyhow!("producer with {mechanism}: {e}"))?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "tls-check");
        for (k, v) in &settings {
            config.set(k, v);
        }
        config
            .create::<BaseConsumer>()
            .map_err(|e| anyhow::anyhow!("consumer with {mechanism}: {e}"))?;
    }
    Ok(())
}
