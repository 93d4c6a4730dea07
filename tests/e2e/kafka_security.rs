//! Kafka's own security against the real broker: a SASL_SSL listener with SCRAM-SHA-512 users
//! made at format time, an SSL listener that requires a client certificate, and ACLs enforced
//! by Kafka's `StandardAuthorizer` with nothing allowed by default. Each role runs with the
//! least set of ACLs the README gives it; one ACL fewer fails clearly; wrong credentials, an
//! unknown CA and a wrong host name stop a role at start-up in one line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clerk_sync_local::KafkaSettings;

use crate::harness::tls::TestCa;
use crate::harness::{
    clerk_sync_expecting_exit, cli_output, eventually, post_fixture, run_cli, Ingest, TestDb,
    TestKafka, WorkerProcess,
};

const SASL: &str = "SASL";
const MTLS: &str = "MTLS";
const INGEST_PASSWORD: &str = "ingest-password-for-tests";
const WORKER_PASSWORD: &str = "worker-password-for-tests";
/// The operator commands' users (one each, so no command borrows another's ACLs).
const OPERATOR_PASSWORD: &str = "operator-password-for-tests";
const OPERATORS: [&str; 4] = ["topics-admin", "replayer", "dlq-operator", "backfiller"];
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
        let settings = OPERATORS.iter().fold(settings, |settings, name| {
            settings.format_arg("--add-scram").format_arg(format!(
                "SCRAM-SHA-512=[name={name},password={OPERATOR_PASSWORD}]"
            ))
        });
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

    /// Grants `role` its ACLs by running the project's `deploy/kafka/acls.sh` (with Kafka's own
    /// ACL tool from the same jars, as the super user): what the tests prove is what it grants.
    async fn grant(&self, role: &str, principal: &str) -> anyhow::Result<()> {
        let tool = self._files.path().join("kafka-acls");
        if !tool.exists() {
            let classpath =
                tokio::task::spawn_blocking(clerk_sync_local::kafka::Classpath::find).await??;
            let command = classpath.command(
                &["-Xmx256m".to_owned()],
                "org.apache.kafka.tools.AclCommand",
            );
            let quote =
                |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
            let words: Vec<String> = std::iter::once(command.get_program())
                .chain(command.get_args())
                .map(quote)
                .collect();
            std::fs::write(
                &tool,
                format!("#!/bin/sh\nexec {} \"$@\"\n", words.join(" ")),
            )?;
            std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        let kafka = &self.kafka;
        let output = tokio::process::Command::new("bash")
            .arg(format!(
                "{}/deploy/kafka/acls.sh",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args([role, principal, "--bootstrap-server", &kafka.brokers])
            .env("KAFKA_ACLS", &tool)
            .env("TOPIC_USERS", &kafka.topics.users)
            .env("TOPIC_ORGANIZATIONS", &kafka.topics.organizations)
            .env("TOPIC_MEMBERSHIPS", &kafka.topics.memberships)
            .env("TOPIC_DLQ", &kafka.dlq)
            .env("KAFKA_GROUP_ID", &kafka.group)
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "acls.sh {role} {principal}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
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
        if acl.cluster {
            args.push("--cluster".to_owned());
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

/// One line of a role's ACL set: operations on topics, a group (and the groups it prefixes),
/// or the cluster.
#[derive(Default)]
struct Acl {
    operations: &'static [&'static str],
    topics: Vec<String>,
    group: Option<String>,
    cluster: bool,
}

/// The one ACL of the worker's set the first test takes away and gives back.
fn dead_letter_write(kafka: &TestKafka) -> Acl {
    Acl {
        operations: &["Write", "Describe"],
        topics: vec![kafka.dlq.clone()],
        ..Acl::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sasl_ssl_with_only_the_readme_acls_each_role_works_and_a_worker_that_cannot_park_a_poison_record_never_commits_past_it(
) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let kafka = &secured.kafka;
    secured.grant("ingest", "User:ingest").await?;
    secured.grant("worker", "User:worker").await?;
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
    secured.grant("ingest", &principal).await?;
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

/// Runs the one-shot command `args` as `user` through the SASL_SSL listener: its standard
/// output, or its error lines when it fails (a command that hangs instead fails the test).
async fn as_operator(
    secured: &SecuredKafka,
    user: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> anyhow::Result<Result<String, String>> {
    let options = secured.sasl_options(secured.ca.pem_file());
    let brokers = secured.sasl_brokers();
    let mut env = vec![
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_OPTIONS", options.as_str()),
        ("KAFKA_SASL_USERNAME", user),
        ("KAFKA_SASL_PASSWORD", OPERATOR_PASSWORD),
    ];
    env.extend_from_slice(extra);
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        cli_output(&secured.kafka, args, &env),
    )
    .await
    .map_err(|_| anyhow::anyhow!("clerk-sync {args:?} as {user} still running after 90 s"))??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    Ok(if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        anyhow::ensure!(
            errors.len() == 1,
            "clerk-sync {args:?} as {user}: one error line, got: {stderr}"
        );
        Err(errors[0].to_owned())
    })
}

fn topics_acl(operations: &'static [&'static str], topics: Vec<String>) -> Acl {
    Acl {
        operations,
        topics,
        ..Acl::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operator_command_works_through_sasl_ssl_with_exactly_the_readme_acls_and_stops_in_one_line_with_one_fewer(
) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let kafka = &secured.kafka;
    let change = |change: &'static str, user: &'static str, acl: Acl| {
        let secured = &secured;
        async move { secured.acls(change, &format!("User:{user}"), &acl).await }
    };

    // topics create, on the harness's topics (made already, as asked; their retention is the
    // broker's): its set lacking DescribeConfigs cannot verify them.
    let create = [
        "topics",
        "create",
        "--partitions",
        "3",
        "--replication",
        "1",
        "--dlq-retention-ms",
        "604800000",
    ];
    let mut all_topics = kafka.topics.synced();
    all_topics.push(kafka.dlq.clone());
    secured.grant("topics", "User:topics-admin").await?;
    let describe_configs = || topics_acl(&["DescribeConfigs"], all_topics.clone());
    change("--remove", "topics-admin", describe_configs()).await?;
    let fewer = as_operator(&secured, "topics-admin", &create, &[]).await?;
    println!("topics create without DescribeConfigs: {fewer:?}");
    assert!(fewer.is_err(), "{fewer:?}");
    change("--add", "topics-admin", describe_configs()).await?;
    let out = as_operator(&secured, "topics-admin", &create, &[]).await?;
    assert!(
        out.as_ref().is_ok_and(|o| o.contains("present, as asked")),
        "{out:?}"
    );

    // A record to replay and a poison record for the dead-letter tools, written (and the poison
    // parked by a worker) as the administrator.
    let body = crate::harness::fixture("user.created.json");
    kafka
        .produce(&kafka.topics.users, "user_acl", &body, "msg_acl_user")
        .await?;
    kafka
        .produce(
            &kafka.topics.users,
            "user_poison",
            b"{not json",
            "msg_acl_poison",
        )
        .await?;
    let live = TestDb::new().await?;
    let worker = WorkerProcess::start(&live, kafka).await?;
    eventually(
        "the poison record parked",
        Duration::from_secs(60),
        || async { (kafka.record_count(&kafka.dlq).ok()? == 1).then_some(()) },
    )
    .await;
    worker.stop().await?;

    // replay without Read on the users topic.
    let rebuilt = TestDb::new().await?;
    let replay = ["replay", "--from-beginning", "--into", rebuilt.url.as_str()];
    secured.grant("replay", "User:replayer").await?;
    let read_users = || topics_acl(&["Read"], vec![kafka.topics.users.clone()]);
    change("--remove", "replayer", read_users()).await?;
    let fewer = as_operator(&secured, "replayer", &replay, &[]).await?;
    println!("replay without Read on the users topic: {fewer:?}");
    assert!(fewer.is_err(), "{fewer:?}");
    change("--add", "replayer", read_users()).await?;
    let out = as_operator(&secured, "replayer", &replay, &[]).await?;
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(rebuilt.count("SELECT count(*) FROM users").await, 1);

    // dlq list works with the dlq set; redrive without Write on the entity topics stops and
    // leaves its letter waiting.
    secured.grant("dlq", "User:dlq-operator").await?;
    let waiting = || async {
        let listed = as_operator(&secured, "dlq-operator", &["dlq", "list", "--json"], &[])
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let listed: serde_json::Value = serde_json::from_str(&listed)?;
        anyhow::ensure!(listed["total"] == 1, "{listed}");
        anyhow::Ok(listed["waiting"].clone())
    };
    assert_eq!(waiting().await?, 1);
    let write_entities = || topics_acl(&["Write"], kafka.topics.synced());
    change("--remove", "dlq-operator", write_entities()).await?;
    let fewer = as_operator(&secured, "dlq-operator", &["dlq", "redrive"], &[]).await?;
    println!("dlq redrive without Write on the entity topics: {fewer:?}");
    assert!(fewer.is_err(), "{fewer:?}");
    assert_eq!(
        waiting().await?,
        1,
        "a redrive that could not write moves nothing"
    );
    change("--add", "dlq-operator", write_entities()).await?;
    let out = as_operator(&secured, "dlq-operator", &["dlq", "redrive"], &[]).await?;
    assert!(
        out.as_ref()
            .is_ok_and(|o| o.contains("1 dead letters redriven")),
        "{out:?}"
    );
    assert_eq!(waiting().await?, 0);

    // backfill without Write on the entity topics.
    let clerk = crate::backfill::clerk_stand_in().await;
    let https = crate::backfill::HttpsClerk::serve(&clerk).await?;
    let uri = https.url();
    let env = https.env(&uri);
    let state = tempfile::tempdir()?;
    let backfill = |file: &str| {
        let path = state.path().join(file).display().to_string();
        [
            "backfill",
            "--page-size",
            "2",
            "--rate",
            "50",
            "--state-file",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([path])
        .collect::<Vec<String>>()
    };
    secured.grant("backfill", "User:backfiller").await?;
    change("--remove", "backfiller", write_entities()).await?;
    let args = backfill("fewer.json");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fewer = as_operator(&secured, "backfiller", &args, &env).await?;
    println!("backfill without Write on the entity topics: {fewer:?}");
    assert!(fewer.is_err(), "{fewer:?}");
    change("--add", "backfiller", write_entities()).await?;
    let args = backfill("all.json");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = as_operator(&secured, "backfiller", &args, &env).await?;
    assert!(
        out.as_ref().is_ok_and(|o| o.contains("published 5 events")),
        "{out:?}"
    );
    Ok(())
}
