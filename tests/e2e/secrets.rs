//! Secrets and personal data never leak: not in logs, `--help`, or error messages.

use crate::harness::{
    clerk_sync, fixture, post_fixture, run_cli, signed_post, Ingest, TestDb, TestKafka,
    WorkerProcess, STDERR_FILE, TEST_SECRET,
};
use crate::pipeline::wait_until_all_committed;

/// Strings from the fixtures that must never be logged.
const PERSONAL: &[&str] = &[
    "alice",
    "Alice",
    "Moreau",
    "Alicia",
    "example.com",
    "203.0.113.24",
    "signup_source",
];

#[tokio::test]
async fn a_full_run_with_real_payloads_logs_no_email_name_or_secret_even_at_debug_level(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let log = tempfile::NamedTempFile::new()?;
    let log_path = log.path().to_str().expect("path");
    let env = [
        (STDERR_FILE, log_path),
        ("RUST_LOG", "debug"),
        ("LOG_FORMAT", "json"),
    ];
    let ingest = Ingest::start(&kafka, &env).await?;
    let _worker = WorkerProcess::start_with(&db, &kafka, &env).await?;
    let client = reqwest::Client::new();
    let names = [
        "user.created.json",
        "organization.created.json",
        "organizationMembership.created.json",
        "user.updated.json",
        "organizationMembership.updated.json",
        "organizationMembership.deleted.json",
        "organization.updated.json",
        "session.created.json",
        "user.deleted.json",
    ];
    for (i, name) in names.iter().enumerate() {
        let r = post_fixture(&ingest, &format!("msg_log{i}"), name).await?;
        assert_eq!(r.status(), 200, "{name}");
    }
    // A rejected request and a poison record carrying personal data.
    signed_post(
        &client,
        &ingest.webhook_url(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_bad",
        &fixture("user.created.json"),
    )
    .send()
    .await?;
    let mut poison: serde_json::Value = serde_json::from_slice(&fixture("user.created.json"))?;
    poison["data"]["created_at"] = serde_json::json!("Alice Moreau <alice.moreau@example.com>");
    kafka
        .produce(
            &kafka.topics.users,
            "user_x",
            poison.to_string().as_bytes(),
            "msg_poison",
        )
        .await?;
    wait_until_all_committed(&kafka).await?;
    assert!(db.count("SELECT count(*) FROM users").await >= 1);

    let logs = std::fs::read_to_string(log.path())?;
    assert!(logs.contains("msg_log0"), "the log shows ids");
    let secret_key = TEST_SECRET.trim_start_matches("whsec_");
    assert!(
        !logs.contains(secret_key),
        "the signing secret leaked into the logs"
    );
    for needle in PERSONAL {
        let line = logs.lines().find(|l| l.contains(needle));
        assert!(
            line.is_none(),
            "personal data `{needle}` in the logs: {}",
            line.unwrap_or_default()
        );
    }
    Ok(())
}

#[test]
fn help_and_start_up_errors_never_print_secret_values() {
    let secret = "whsec_c2VjcmV0LXZhbHVlLXNob3VsZC1uZXZlci1wcmludA==";
    let help = clerk_sync(
        &["ingest", "--help"],
        &[
            ("CLERK_WEBHOOK_SECRET", secret),
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
        ],
    );
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("CLERK_WEBHOOK_SECRET") && !text.contains(secret));
    let worker_help = clerk_sync(
        &["worker", "--help"],
        &[("DATABASE_URL", "postgres://u:hunter2@h/db")],
    );
    assert!(!String::from_utf8_lossy(&worker_help.stdout).contains("hunter2"));

    let bad = clerk_sync(
        &["ingest"],
        &[
            ("CLERK_WEBHOOK_SECRET", "whsec_%%%not-base64-hunter2"),
            ("KAFKA_BROKERS", "127.0.0.1:1"),
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("CLERK_WEBHOOK_SECRET") && !err.contains("hunter2"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

#[test]
fn a_secret_set_both_directly_and_as_a_file_fails_at_start_up() {
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), TEST_SECRET).expect("write");
    let out = clerk_sync(
        &["ingest"],
        &[
            ("CLERK_WEBHOOK_SECRET", TEST_SECRET),
            (
                "CLERK_WEBHOOK_SECRET_FILE",
                file.path().to_str().expect("path"),
            ),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CLERK_WEBHOOK_SECRET and CLERK_WEBHOOK_SECRET_FILE are both set"),
        "{err}"
    );
}

#[tokio::test]
async fn the_signing_secret_can_come_from_a_file() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), format!("{TEST_SECRET}\n"))?;
    let ingest = Ingest::start(
        &kafka,
        &[(
            "CLERK_WEBHOOK_SECRET_FILE",
            file.path().to_str().expect("path"),
        )],
    )
    .await?;
    let r = post_fixture(&ingest, "msg_file", "user.created.json").await?;
    assert_eq!(r.status(), 200);
    let _ = run_cli(&kafka, &["lag", "--group", "nobody"], &[]).await?;
    Ok(())
}
