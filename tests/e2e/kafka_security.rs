//! Kafka's own security against the real broker: a SASL_SSL listener with SCRAM-SHA-512 users
//! made at format time, an SSL listener that requires a client certificate, and ACLs enforced
//! by Kafka's `StandardAuthorizer` with nothing allowed by default. Each role runs with the
//! least set of ACLs the README gives it; one ACL fewer fails clearly; wrong credentials, an
//! unknown CA and a wrong host name stop a role at start-up in one line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clerk_sync::local::KafkaSettings;

use crate::harness::tls::TestCa;
use crate::harness::{
    clerk_sync_expecting_exit, eventually, post_fixture, run_cli, Ingest, TestDb, TestKafka,
    WorkerProcess,
};

const SASL: &str = "SASL";
const MTLS: &str = "MTLS";
const INGEST_PASSWORD: &str = "ingest-password-for-tests";
const WORKER_PASSWORD: &str = "worker-password-for-tests";
/// The client certificate's subject: Kafka's principal for it is `User:CN=clerk-sync-worker`.
const CLIENT_CN: &str = "clerk-sync-worker";

/// A single node with the secured listeners beside the harness's PLAINTEXT one (the harness,
/// as `ANONYMOUS`, is the super user that creates topics and ACLs, as an administrator would).
struct SecuredKafka {
    kafka: TestKafka,
    ca: TestCa,
    /// The client certificate and key for the mTLS listener.
    client_cert: PathBuf,
    client_key: PathBuf,
    _files: tempfile::TempDir,
}

impl SecuredKafka {
    async fn start() -> anyhow::Result<Self> {
        let ca = TestCa::new("clerk-sync test Kafka CA")?;
        let files = tempfile::tempdir()?;
        // The brokers' certificate is for 127.0.0.1 only: a client that dials them by another
        // name (localhost) is refused, as a wrong host name must be.
        let (cert, key) = ca.issue(&["127.0.0.1"], "kafka")?;
        let keystore = files.path().join("broker.pem");
        std::fs::write(&keystore, format!("{key}{cert}"))?;
        let (client, client_key) = ca.issue(&["clerk-sync"], CLIENT_CN)?;
        let client_cert = files.path().join("client.pem");
        let client_key_file = files.path().join("client.key");
        std::fs::write(&client_cert, client)?;
        std::fs::write(&client_key_file, client_key)?;
        let path = |p: &Path| p.display().to_string();
        let settings = KafkaSettings::default()
            .listener(SASL, "SASL_SSL")
            .listener(MTLS, "SSL")
            .property("sasl.enabled.mechanisms", "SCRAM-SHA-512")
            .property(
                "listener.name.sasl.scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            )
            .property("ssl.keystore.type", "PEM")
            .property("ssl.keystore.location", path(&keystore))
            .property("ssl.truststore.type", "PEM")
            .property("ssl.truststore.location", path(ca.pem_file()))
            .property("listener.name.mtls.ssl.client.auth", "required")
            .property(
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            )
            .property("allow.everyone.if.no.acl.found", "false")
            .property("super.users", "User:ANONYMOUS")
            .format_arg("--add-scram")
            .format_arg(format!(
                "SCRAM-SHA-512=[name=ingest,password={INGEST_PASSWORD}]"
            ))
            .format_arg("--add-scram")
            .format_arg(format!(
                "SCRAM-SHA-512=[name=worker,password={WORKER_PASSWORD}]"
            ));
        let kafka = TestKafka::private_with(settings).await?;
        Ok(SecuredKafka {
            kafka,
            ca,
            client_cert,
            client_key: client_key_file,
            _files: files,
        })
    }

    fn sasl_brokers(&self) -> String {
        self.kafka
            .broker
            .as_ref()
            .map(|b| b.listener_brokers(SASL))
            .unwrap_or_default()
    }

    fn mtls_brokers(&self) -> String {
        self.kafka
            .broker
            .as_ref()
            .map(|b| b.listener_brokers(MTLS))
            .unwrap_or_default()
    }

    /// `KAFKA_OPTIONS` for the SASL_SSL listener, as the README gives them.
    fn sasl_options(&self, ca: &Path) -> String {
        format!(
            "security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,ssl.ca.location={}",
            ca.display()
        )
    }

    /// `KAFKA_OPTIONS` for the mTLS listener, as the README gives them.
    fn mtls_options(&self) -> String {
        format!(
            "security.protocol=SSL,ssl.ca.location={},ssl.certificate.location={},ssl.key.location={}",
            self.ca.pem_file().display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }

    /// Runs Kafka's own ACL tool as the super user: `--add` or `--remove` of one role's set.
    async fn acls(&self, change: &str, principal: &str, acl: &Acl) -> anyhow::Result<()> {
        let mut args = vec![
            "--bootstrap-server".to_owned(),
            self.kafka.brokers.clone(),
            change.to_owned(),
            "--allow-principal".to_owned(),
            principal.to_owned(),
        ];
        if change == "--remove" {
            args.push("--force".to_owned());
        }
        for operation in acl.operations {
            args.extend(["--operation".to_owned(), (*operation).to_owned()]);
        }
        for topic in &acl.topics {
            args.extend(["--topic".to_owned(), topic.clone()]);
        }
        if let Some(group) = &acl.group {
            // Prefixed: the group and the lag probe's `<group>-lag-probe`.
            args.extend([
                "--group".to_owned(),
                group.clone(),
                "--resource-pattern-type".to_owned(),
                "prefixed".to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kafka
            .kafka_tool("org.apache.kafka.tools.AclCommand", &args)
            .await?;
        Ok(())
    }
}

/// One line of a role's ACL set: operations on topics or a group.
struct Acl {
    operations: &'static [&'static str],
    topics: Vec<String>,
    group: Option<String>,
}

/// Ingest: write (and describe, for metadata) its three topics; idempotent writes need no
/// cluster ACL since Kafka 2.8 once the topics may be written.
fn ingest_acls(kafka: &TestKafka) -> Vec<Acl> {
    vec![Acl {
        operations: &["Write", "Describe"],
        topics: kafka.topics.synced(),
        group: None,
    }]
}

/// The worker: read its topics, read the groups named after its group (its own and its lag
/// probe's, `<group>-lag-probe`), write the dead-letter topic.
fn worker_acls(kafka: &TestKafka) -> Vec<Acl> {
    vec![
        Acl {
            operations: &["Read", "Describe"],
            topics: kafka.topics.synced(),
            group: None,
        },
        Acl {
            operations: &["Read"],
            topics: vec![],
            group: Some(kafka.group.clone()),
        },
        dead_letter_write(kafka),
    ]
}

fn dead_letter_write(kafka: &TestKafka) -> Acl {
    Acl {
        operations: &["Write", "Describe"],
        topics: vec![kafka.dlq.clone()],
        group: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sasl_ssl_with_only_the_readme_acls_each_role_works_and_a_worker_that_cannot_park_a_poison_record_never_commits_past_it(
) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let kafka = &secured.kafka;
    for acl in ingest_acls(kafka) {
        secured.acls("--add", "User:ingest", &acl).await?;
    }
    for acl in worker_acls(kafka) {
        secured.acls("--add", "User:worker", &acl).await?;
    }
    let options = secured.sasl_options(secured.ca.pem_file());
    let brokers = secured.sasl_brokers();
    let db = TestDb::new().await?;
    let ingest = Ingest::start_with_brokers(
        kafka,
        &brokers,
        &[
            ("KAFKA_OPTIONS", &options),
            ("KAFKA_SASL_USERNAME", "ingest"),
            ("KAFKA_SASL_PASSWORD", INGEST_PASSWORD),
        ],
    )
    .await?;
    let worker_env = [
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_OPTIONS", options.as_str()),
        ("KAFKA_SASL_USERNAME", "worker"),
        ("KAFKA_SASL_PASSWORD", WORKER_PASSWORD),
    ];
    let _worker = WorkerProcess::start_with(&db, kafka, &worker_env).await?;

    let response = post_fixture(&ingest, "msg_sasl_user", "user.created.json").await?;
    assert!(response.status().is_success(), "{}", response.text().await?);
    eventually("the user applied", Duration::from_secs(60), || async {
        (db.count("SELECT count(*) FROM users").await == 1).then_some(())
    })
    .await;
    // An operator command, as the worker's user (the group's Describe comes with Read).
    let mut lag_env = worker_env.to_vec();
    lag_env.push(("KAFKA_GROUP_ID", &kafka.group));
    let lag = run_cli(kafka, &["lag", "--json"], &lag_env).await?;
    assert!(lag.contains(&kafka.topics.users), "{lag}");

    // One ACL fewer: the worker may no longer write the dead-letter topic. A poison record
    // then cannot be parked, so its offset must not be committed: the next owner would skip it.
    secured
        .acls("--remove", "User:worker", &dead_letter_write(kafka))
        .await?;
    let before: i64 = kafka.committed()?.iter().map(|(_, _, o)| o).sum();
    kafka
        .produce(
            &kafka.topics.users,
            "user_poison",
            b"{not json",
            "msg_poison",
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during: i64 = kafka.committed()?.iter().map(|(_, _, o)| o).sum();
    assert_eq!(
        during, before,
        "the worker committed past a poison record it could not park"
    );
    assert_eq!(kafka.record_count(&kafka.dlq)?, 0);

    // The ACL back: the record is parked and its offset committed, nothing lost.
    secured
        .acls("--add", "User:worker", &dead_letter_write(kafka))
        .await?;
    eventually(
        "the poison record parked and committed",
        Duration::from_secs(60),
        || async {
            let committed: i64 = kafka.committed().ok()?.iter().map(|(_, _, o)| o).sum();
            (committed == before + 1 && kafka.record_count(&kafka.dlq).ok()? == 1).then_some(())
        },
    )
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_an_unknown_ca_or_a_wrong_host_name_stops_a_role_at_start_up_in_one_line(
) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let kafka = &secured.kafka;
    let other_ca = TestCa::new("a CA the brokers do not use")?;
    let good = secured.sasl_options(secured.ca.pem_file());
    let unknown_ca = secured.sasl_options(other_ca.pem_file());
    let sasl = secured.sasl_brokers();
    // The brokers' certificate is for 127.0.0.1, not localhost.
    let wrong_host = sasl.replace("127.0.0.1", "localhost");
    let cases = [
        (
            "a wrong password",
            sasl.as_str(),
            good.as_str(),
            "not-the-password",
            "KAFKA_SASL_PASSWORD",
        ),
        (
            "an unknown CA",
            sasl.as_str(),
            unknown_ca.as_str(),
            INGEST_PASSWORD,
            "ssl.ca.location",
        ),
        (
            "a wrong host name",
            wrong_host.as_str(),
            good.as_str(),
            INGEST_PASSWORD,
            "KAFKA_BROKERS",
        ),
    ];
    for (what, brokers, options, password, setting) in cases {
        for role in ["ingest", "worker", "lag"] {
            let (succeeded, stderr) = clerk_sync_expecting_exit(
                &[role],
                &[
                    ("KAFKA_BROKERS", brokers),
                    ("KAFKA_OPTIONS", options),
                    ("KAFKA_SASL_USERNAME", "ingest"),
                    ("KAFKA_SASL_PASSWORD", password),
                    ("CLERK_WEBHOOK_SECRET", crate::harness::TEST_SECRET),
                    ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
                    ("LISTEN_ADDR", "127.0.0.1:0"),
                    ("TOPIC_USERS", &kafka.topics.users),
                ],
                Duration::from_secs(30),
            )
            .await?;
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
            println!("{role} with {what}: {}", errors.join(" | "));
            assert!(!succeeded, "{role} with {what} started: {stderr}");
            assert_eq!(errors.len(), 1, "{role} with {what}: {stderr}");
            assert!(
                errors[0].contains("refused the connection") && errors[0].contains(setting),
                "{role} with {what}: {stderr}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_listener_requiring_client_certificates_a_client_with_one_works_and_one_without_is_refused_at_start_up(
) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let kafka = &secured.kafka;
    let principal = format!("User:CN={CLIENT_CN}");
    for acl in ingest_acls(kafka) {
        secured.acls("--add", &principal, &acl).await?;
    }
    let brokers = secured.mtls_brokers();
    let with_cert = secured.mtls_options();

    let ingest =
        Ingest::start_with_brokers(kafka, &brokers, &[("KAFKA_OPTIONS", &with_cert)]).await?;
    let response = post_fixture(&ingest, "msg_mtls_user", "user.created.json").await?;
    assert!(response.status().is_success(), "{}", response.text().await?);
    assert_eq!(kafka.record_count(&kafka.topics.users)?, 1);

    let without_cert = format!(
        "security.protocol=SSL,ssl.ca.location={}",
        secured.ca.pem_file().display()
    );
    let (succeeded, stderr) = clerk_sync_expecting_exit(
        &["ingest"],
        &[
            ("KAFKA_BROKERS", &brokers),
            ("KAFKA_OPTIONS", &without_cert),
            ("CLERK_WEBHOOK_SECRET", crate::harness::TEST_SECRET),
            ("LISTEN_ADDR", "127.0.0.1:0"),
        ],
        Duration::from_secs(30),
    )
    .await?;
    println!("ingest without a client certificate: {}", stderr.trim());
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains("refused the connection") && stderr.contains("ssl.certificate.location"),
        "{stderr}"
    );
    Ok(())
}
