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

#[tokio::test]
async fn secrets_read_from_files_stay_out_of_the_process_environment() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let secret = tempfile::NamedTempFile::new()?;
    std::fs::write(secret.path(), format!("{TEST_SECRET}\n"))?;
    let options = tempfile::NamedTempFile::new()?;
    std::fs::write(
        options.path(),
        "linger.ms=5,sasl.password=hunter2-from-a-file",
    )?;
    let ingest = Ingest::start(
        &kafka,
        &[
            (
                "CLERK_WEBHOOK_SECRET_FILE",
                secret.path().to_str().expect("path"),
            ),
            ("KAFKA_OPTIONS_FILE", options.path().to_str().expect("path")),
        ],
    )
    .await?;
    let r = post_fixture(&ingest, "msg_files", "user.created.json").await?;
    assert_eq!(r.status(), 200, "the secret and the options were read");
    let pid = ingest.child.id().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("CLERK_WEBHOOK_SECRET_FILE="),
        "the test looked at the right process"
    );
    for value in [TEST_SECRET, "hunter2-from-a-file"] {
        assert!(
            !environ.contains(value),
            "{value} was copied into the environment"
        );
    }
    Ok(())
}

#[test]
fn kafka_options_are_hidden_in_help_and_a_weak_signing_secret_is_refused_naming_its_place() {
    let help = clerk_sync(
        &["worker", "--help"],
        &[(
            "KAFKA_OPTIONS",
            "sasl.password=hunter2,ssl.key.password=k3y",
        )],
    );
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("KAFKA_OPTIONS"), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("k3y"), "{text}");

    for (secrets, place) in [
        ("whsec_test".to_owned(), "number 1"),
        (format!("{TEST_SECRET} whsec_dGVzdA=="), "number 2"),
    ] {
        let out = clerk_sync(
            &["ingest"],
            &[
                ("CLERK_WEBHOOK_SECRET", secrets.as_str()),
                ("KAFKA_BROKERS", "127.0.0.1:1"),
            ],
        );
        assert!(!out.status.success(), "{secrets} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("CLERK_WEBHOOK_SECRET")
                && err.contains(place)
                && err.contains("bytes of key"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_names_a_configured_secret_and_database_without_printing_them_and_creates_the_dead_letter_topic(
) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use tokio::io::AsyncBufReadExt;

    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    // Trust authentication takes any password: this one must not be printed.
    let url = db.url.replacen("postgres@", "postgres:hunter2-db@", 1);
    assert!(url.contains("hunter2-db"), "{url}");
    let port = clerk_sync_local::free_port()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-sync"))
        .arg("dev")
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("KAFKA_BROKERS", &kafka.brokers)
        .env("CLERK_WEBHOOK_SECRET", TEST_SECRET)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut shown = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            shown.push_str(&line);
            shown.push('\n');
            if line.contains("Press Ctrl-C") {
                break;
            }
        }
    })
    .await?;
    assert!(shown.contains("clerk-sync dev is running"), "{shown}");
    assert!(
        shown.contains("CLERK_WEBHOOK_SECRET") && shown.contains("DATABASE_URL"),
        "{shown}"
    );
    assert!(
        !shown.contains(TEST_SECRET) && !shown.contains("hunter2-db"),
        "{shown}"
    );
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()?;
    let metadata = consumer.fetch_metadata(Some("clerk.dlq"), std::time::Duration::from_secs(5))?;
    assert!(
        metadata
            .topics()
            .iter()
            .any(|t| t.name() == "clerk.dlq" && t.error().is_none()),
        "dev created the dead-letter topic"
    );
    child.kill().await?;
    Ok(())
}

#[test]
fn a_secret_cut_at_a_comma_in_kafka_options_never_appears_on_stderr() {
    // Each is what an operator might write: a password holding a comma, a value put where a
    // property goes, a property whose value librdkafka refuses (its own message quotes it).
    for options in [
        "security.protocol=PLAINTEXT,hunter2secret",
        "hunter2secret,security.protocol=PLAINTEXT",
        "linger.ms=5,=hunter2secret",
        "linger.ms=hunter2secret",
    ] {
        for role in ["ingest", "worker", "lag"] {
            let out = clerk_sync(
                &[role],
                &[
                    ("CLERK_WEBHOOK_SECRET", TEST_SECRET),
                    ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
                    ("KAFKA_BROKERS", "127.0.0.1:1"),
                    ("KAFKA_OPTIONS", options),
                ],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{role} started with {options}");
            assert!(
                err.contains("KAFKA_OPTIONS"),
                "{role} with {options}: {err}"
            );
            assert!(
                !err.contains("hunter2secret"),
                "{role} with {options}: {err}"
            );
        }
    }
}
