//! Production connections: TLS to Postgres from the URL, and TLS/SASL settings for Kafka passed
//! through to librdkafka (which must have been built with them).

use std::time::Duration;

use clerk_sync_ingest::Publisher;
use clerk_sync_local::TempPostgres;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_that_would_not_verify_a_remote_server_or_whose_ca_did_not_sign_the_certificate_is_refused(
) -> anyhow::Result<()> {
    let migrate = |url: String, extra: Option<(&'static str, &'static str)>| async move {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-sync"));
        command.arg("migrate").env_clear().env("DATABASE_URL", &url);
        if let Some((k, v)) = extra {
            command.env(k, v);
        }
        let out = command.output().await?;
        anyhow::Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    // Off loopback: no sslmode (sqlx's `prefer` falls back to plain text), `require` (encrypts
    // to whoever answers), `disable`: each refused before any connection, naming the setting.
    for query in [
        "",
        "?sslmode=require",
        "?sslmode=prefer",
        "?sslmode=disable",
    ] {
        let url = format!("postgres://app:hunter2@db.example.invalid:5432/app{query}");
        let (ok, err) = migrate(url, None).await?;
        assert!(!ok, "{query}: migrated");
        assert!(
            err.trim()
                .starts_with("error: DATABASE_URL: expected sslmode=verify-full"),
            "{query}: {err}"
        );
        assert!(!err.contains("hunter2"), "the password never shows: {err}");
    }
    // The documented opt-out lets it try (and fail to reach the made-up host).
    let (ok, err) = migrate(
        "postgres://app:hunter2@db.example.invalid:5432/app?sslmode=require".into(),
        Some(("DATABASE_ALLOW_UNVERIFIED", "true")),
    )
    .await?;
    assert!(!ok && err.contains("cannot connect"), "{err}");

    // A real TLS server whose certificate the named CA never signed: refused, nothing migrated.
    let pg = tokio::task::spawn_blocking(TempPostgres::start_with_tls).await??;
    let stranger = crate::harness::tls::TestCa::new("not the database's CA")?;
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        stranger.pem_file().display()
    );
    let (ok, err) = migrate(url, None).await?;
    assert!(!ok, "migrated over an unverified connection");
    assert!(err.contains("DATABASE_URL: cannot connect"), "{err}");
    let mut conn = PgConnection::connect(&format!("{}?sslmode=require", pg.url())).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(tables, 0, "nothing migrated");
    Ok(())
}
