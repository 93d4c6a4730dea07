//! Drift repair: `backfill --prune` against a Backend API stand-in served over HTTPS, after
//! webhooks that never came (a deletion in Clerk, an update, a new user), through the real
//! binary, broker, worker and database.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::backfill::HttpsClerk;
use crate::harness::{
    cli_output, eventually, signed_post, spawn_cli, Ingest, TestDb, TestKafka, WorkerProcess,
    TEST_SECRET,
};
use crate::pipeline::wait_until_all_committed;

const T: i64 = 1_754_560_800_000;

fn user(id: &str, first: &str, updated_at: i64) -> Value {
    json!({"object": "user", "id": id, "first_name": first, "last_name": "Doe",
           "email_addresses": [{"id": "idn_1", "email_address": format!("{id}@example.com")}],
           "primary_email_address_id": "idn_1", "public_metadata": {}, "created_at": T,
           "updated_at": updated_at})
}

fn org(id: &str, name: &str) -> Value {
    json!({"object": "organization", "id": id, "name": name, "slug": name.to_lowercase(),
           "public_metadata": {"plan": "team"}, "created_at": T, "updated_at": T})
}

fn membership(id: &str, org_id: &str, user_id: &str) -> Value {
    json!({"object": "organization_membership", "id": id, "role": "org:member", "permissions": [],
           "organization": org(org_id, "Acme"),
           "public_user_data": {"user_id": user_id, "identifier": format!("{user_id}@example.com")},
           "created_at": T, "updated_at": T})
}

/// Delivers Clerk webhooks, each dated just after its object's `updated_at` as Clerk's are.
async fn deliver(ingest: &Ingest, events: &[(&str, Value)]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for (i, (event_type, data)) in events.iter().enumerate() {
        let at = data["updated_at"].as_i64().unwrap_or(T) + 10;
        let body = json!({"type": event_type, "object": "event", "timestamp": at, "data": data});
        let r = signed_post(
            &client,
            &ingest.webhook_url(),
            TEST_SECRET,
            &format!("msg_{i}_{}", data["id"].as_str().unwrap_or("x")),
            body.to_string().as_bytes(),
        )
        .send()
        .await?;
        anyhow::ensure!(r.status() == 200, "{event_type}: {}", r.status());
    }
    Ok(())
}

/// What the Backend API stand-in has: the three listings, the objects a direct `GET` finds
/// (anything else answers 404, as a deleted object does) and each organization's members.
#[derive(Default)]
struct Clerk {
    orgs: Vec<Value>,
    users: Vec<Value>,
    memberships: Vec<Value>,
    /// Found by `GET /v1/users/{id}` although not listed.
    unlisted_users: Vec<Value>,
    /// Overrides the organizations' `total_count`.
    org_total: Option<usize>,
    /// Holds the first listing's answer back this long.
    delay: Duration,
}

impl Clerk {
    async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        let ok = |p: String, body: Value| {
            Mock::given(method("GET"))
                .and(path(p))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
        };
        Mock::given(method("GET"))
            .and(path("/v1/organizations"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"data": self.orgs,
                        "total_count": self.org_total.unwrap_or(self.orgs.len())}))
                    .set_delay(self.delay),
            )
            .mount(&server)
            .await;
        ok("/v1/users".into(), json!(self.users))
            .mount(&server)
            .await;
        ok(
            "/v1/users/count".into(),
            json!({"object": "total_count", "total_count": self.users.len()}),
        )
        .mount(&server)
        .await;
        ok(
            "/v1/organization_memberships".into(),
            json!({"data": self.memberships, "total_count": self.memberships.len()}),
        )
        .mount(&server)
        .await;
        for u in self.users.iter().chain(&self.unlisted_users) {
            ok(
                format!("/v1/users/{}", u["id"].as_str().expect("id")),
                u.clone(),
            )
            .mount(&server)
            .await;
        }
        for o in &self.orgs {
            let id = o["id"].as_str().expect("id");
            ok(format!("/v1/organizations/{id}"), o.clone())
                .mount(&server)
                .await;
            let members: Vec<&Value> = self
                .memberships
                .iter()
                .filter(|m| m["organization"]["id"] == id)
                .collect();
            ok(
                format!("/v1/organizations/{id}/memberships"),
                json!({"data": members, "total_count": members.len()}),
            )
            .mount(&server)
            .await;
        }
        server
    }
}

/// `backfill` with `args` against the stand-in and the test's database: exit code, stdout,
/// stderr.
async fn backfill(
    kafka: &TestKafka,
    db: &TestDb,
    https: &HttpsClerk,
    args: &[&str],
) -> anyhow::Result<(Option<i32>, String, String)> {
    let uri = https.url();
    let mut env = https.env(&uri).to_vec();
    env.push(("DATABASE_URL", db.url.as_str()));
    env.push(("RUST_LOG", "info"));
    let state = tempfile::NamedTempFile::new()?;
    let state = state.path().to_str().expect("path");
    let args = [&["backfill", "--rate", "100", "--state-file", state], args].concat();
    let out = cli_output(kafka, &args, &env).await?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The ids a JSON report lists for `table` and `kind`.
fn ids(report: &Value, table: &str, kind: &str) -> Vec<String> {
    let table = report["drift"]
        .as_array()
        .expect("a drift report")
        .iter()
        .find(|t| t["table"] == table)
        .expect("the table");
    assert_eq!(
        table[kind]["count"].as_u64(),
        Some(table[kind]["ids"].as_array().expect("ids").len() as u64)
    );
    serde_json::from_value(table[kind]["ids"].clone()).expect("ids")
}

async fn synced_at(db: &TestDb) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT clerk_id, synced_at::text FROM users WHERE clerk_id IN ('user_3', 'user_4')
         UNION ALL SELECT clerk_id, synced_at::text FROM organizations WHERE clerk_id = 'org_1'
         UNION ALL SELECT clerk_id, synced_at::text FROM org_memberships WHERE clerk_id = 'orgmem_1'
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_report_names_what_no_webhook_delivered_and_prune_repairs_exactly_that(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    deliver(
        &ingest,
        &[
            ("organization.created", org("org_1", "Acme")),
            ("organization.created", org("org_2", "Beta")),
            ("user.created", user("user_1", "Ann", T)),
            ("user.created", user("user_2", "Bo", T)),
            ("user.created", user("user_3", "Cy", T)),
            ("user.created", user("user_4", "Di", T)),
            (
                "organizationMembership.created",
                membership("orgmem_1", "org_1", "user_1"),
            ),
            (
                "organizationMembership.created",
                membership("orgmem_2", "org_1", "user_2"),
            ),
            (
                "organizationMembership.created",
                membership("orgmem_3", "org_2", "user_3"),
            ),
            (
                "organizationMembership.created",
                membership("orgmem_4", "org_1", "user_4"),
            ),
        ],
    )
    .await?;
    wait_until_all_committed(&kafka).await?;

    // Then, in Clerk, with no webhook: user_2 and org_2 deleted (their memberships with them),
    // user_4 removed from org_1, user_1 renamed, user_5 signed up.
    let clerk = Clerk {
        orgs: vec![org("org_1", "Acme")],
        users: vec![
            user("user_1", "Ann-Marie", T + 5_000),
            user("user_3", "Cy", T),
            user("user_4", "Di", T),
            user("user_5", "Eve", T),
        ],
        memberships: vec![membership("orgmem_1", "org_1", "user_1")],
        ..Clerk::default()
    }
    .serve()
    .await;
    let https = HttpsClerk::serve(&clerk).await?;
    let untouched = synced_at(&db).await?;
    let records = kafka.total_records()?;

    let (code, stdout, stderr) =
        backfill(&kafka, &db, &https, &["--dry-run", "--prune", "--json"]).await?;
    assert_eq!(code, Some(3), "drift is exit code 3: {stderr}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(ids(&report, "users", "missing"), ["user_5"]);
    assert_eq!(ids(&report, "users", "stale"), ["user_1"]);
    assert_eq!(ids(&report, "users", "deleted"), ["user_2"]);
    assert_eq!(ids(&report, "organizations", "deleted"), ["org_2"]);
    assert_eq!(
        ids(&report, "org_memberships", "deleted"),
        ["orgmem_2", "orgmem_3", "orgmem_4"]
    );
    for (table, kind) in [
        ("organizations", "missing"),
        ("organizations", "stale"),
        ("org_memberships", "missing"),
        ("org_memberships", "stale"),
    ] {
        assert!(ids(&report, table, kind).is_empty(), "{table} {kind}");
    }
    assert_eq!(report["published"], 0);
    assert_eq!(
        kafka.total_records()?,
        records,
        "a dry run publishes nothing"
    );

    let (code, stdout, stderr) = backfill(&kafka, &db, &https, &["--prune"]).await?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    wait_until_all_committed(&kafka).await?;
    let erased: (Option<String>, Option<String>, bool) = sqlx::query_as(
        "SELECT email, first_name, deleted_at IS NOT NULL FROM users WHERE clerk_id = 'user_2'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(erased, (None, None, true), "user_2 tombstoned and erased");
    let deleted: Vec<String> = sqlx::query_scalar(
        "SELECT clerk_id FROM organizations WHERE deleted_at IS NOT NULL
         UNION ALL SELECT clerk_id FROM org_memberships WHERE deleted_at IS NOT NULL ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(deleted, ["org_2", "orgmem_2", "orgmem_3", "orgmem_4"]);
    let live: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT clerk_id, first_name FROM users WHERE deleted_at IS NULL ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(
        live,
        [
            ("user_1".into(), Some("Ann-Marie".into())),
            ("user_3".into(), Some("Cy".into())),
            ("user_4".into(), Some("Di".into())),
            ("user_5".into(), Some("Eve".into())),
        ]
    );
    assert_eq!(
        synced_at(&db).await?,
        untouched,
        "rows Clerk agrees with are not written"
    );
    for id in ["user_2", "org_2", "orgmem_2", "orgmem_3", "orgmem_4"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("pruned") && l.contains(id)),
            "{id} logged: {stderr}"
        );
    }
    assert!(
        !stderr.contains("example.com") && !stdout.contains("example.com"),
        "ids only, never what a row held: {stderr}"
    );

    let (code, stdout, stderr) = backfill(&kafka, &db, &https, &["--dry-run", "--prune"]).await?;
    assert_eq!(code, Some(0), "no drift left: {stdout}{stderr}");
    for table in ["organizations", "users", "org_memberships"] {
        assert!(stdout.contains(&format!("{table}: no drift")), "{stdout}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_a_live_webhook_changes_after_the_listing_began_is_not_pruned() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    deliver(
        &ingest,
        &[
            ("user.created", user("user_1", "Ann", T)),
            ("user.created", user("user_9", "Ian", T)),
        ],
    )
    .await?;
    wait_until_all_committed(&kafka).await?;
    // user_9 is neither listed nor found: by the listing alone it would be pruned.
    let clerk = Clerk {
        users: vec![user("user_1", "Ann", T)],
        delay: Duration::from_secs(3),
        ..Clerk::default()
    }
    .serve()
    .await;
    let https = HttpsClerk::serve(&clerk).await?;
    let uri = https.url();
    let mut env = https.env(&uri).to_vec();
    env.push(("DATABASE_URL", db.url.as_str()));
    let state = tempfile::NamedTempFile::new()?;
    let child = spawn_cli(
        &kafka,
        &[
            "backfill",
            "--rate",
            "100",
            "--prune",
            "--state-file",
            state.path().to_str().expect("path"),
        ],
        &env,
    )?;

    // Once the listing has begun (the backfill has read the database's clock), a live update.
    eventually(
        "the backfill has begun",
        Duration::from_secs(30),
        || async {
            let began: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1
             AND application_name = 'clerk-sync backfill' AND query LIKE 'SELECT now()%'",
            )
            .bind(db.name())
            .fetch_one(&db.pool)
            .await
            .ok()?;
            (began == 1).then_some(())
        },
    )
    .await;
    deliver(
        &ingest,
        &[("user.updated", user("user_9", "Ian-Live", T + 9_000))],
    )
    .await?;
    eventually(
        "the live update applied",
        Duration::from_secs(30),
        || async {
            let name: Option<String> =
                sqlx::query_scalar("SELECT first_name FROM users WHERE clerk_id = 'user_9'")
                    .fetch_one(&db.pool)
                    .await
                    .ok()?;
            (name.as_deref() == Some("Ian-Live")).then_some(())
        },
    )
    .await;

    let out = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("users: no drift"), "{stdout}");
    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE clerk_id = 'user_9' AND deleted_at IS NULL")
            .await,
        1,
        "the live event wins"
    );
    let asked: Vec<String> = clerk
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(
        !asked.iter().any(|p| p.ends_with("user_9")),
        "a row changed since the listing began is not even a candidate: {asked:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_refuses_a_truncated_listing_an_empty_one_and_more_deletions_than_its_bound(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    deliver(
        &ingest,
        &[
            ("organization.created", org("org_1", "Acme")),
            ("user.created", user("user_1", "Ann", T)),
            ("user.created", user("user_2", "Bo", T)),
        ],
    )
    .await?;
    wait_until_all_committed(&kafka).await?;
    let one_user_gone = || Clerk {
        orgs: vec![org("org_1", "Acme")],
        users: vec![user("user_1", "Ann", T)],
        ..Clerk::default()
    };
    let cases = [
        (
            Clerk {
                org_total: Some(2),
                ..one_user_gone()
            },
            vec!["--prune"],
            "looks truncated",
        ),
        (
            Clerk {
                users: vec![],
                ..one_user_gone()
            },
            vec!["--prune"],
            "listed no users while users holds 2 live rows",
        ),
        (
            one_user_gone(),
            vec!["--prune", "--max-prune", "0"],
            "more than --max-prune 0",
        ),
    ];
    for (clerk, args, reason) in cases {
        let server = clerk.serve().await;
        let https = HttpsClerk::serve(&server).await?;
        let (code, stdout, stderr) = backfill(&kafka, &db, &https, &args).await?;
        assert_eq!(code, Some(1), "{reason}: {stdout}{stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        assert!(stdout.contains("pruning refused"), "{stdout}");
        let (code, _, stderr) =
            backfill(&kafka, &db, &https, &[&args[..], &["--dry-run"]].concat()).await?;
        assert_eq!(code, Some(1), "a dry run refuses alike: {stderr}");
    }
    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE deleted_at IS NULL")
            .await,
        2,
        "nothing pruned"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_check_pushes_its_figures_over_https_to_a_pushgateway_in_a_format_promtool_accepts(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let pushgateway = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/metrics/job/clerk_sync_drift"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&pushgateway)
        .await;
    let clerk = Clerk {
        users: vec![user("user_1", "Ann", T)],
        ..Clerk::default()
    }
    .serve()
    .await;
    let https = HttpsClerk::serve(&clerk).await?;
    // Over TLS, its certificate signed by the CA the operator trusts (SSL_CERT_FILE).
    let pushgateway_front = https.also_serve(&pushgateway).await?;
    let url = pushgateway_front.url();
    assert!(url.starts_with("https://"), "{url}");
    let (code, stdout, stderr) = backfill(
        &kafka,
        &db,
        &https,
        &["--dry-run", "--prune", "--pushgateway-url", &url],
    )
    .await?;
    assert_eq!(code, Some(3), "user_1 is missing here: {stdout}{stderr}");
    let pushed = pushgateway.received_requests().await.unwrap_or_default();
    let body = String::from_utf8(pushed[0].body.clone())?;
    assert!(
        body.contains("clerk_sync_drift_rows{table=\"users\",kind=\"missing\"} 1\n"),
        "{body}"
    );
    for table in ["organizations", "users", "org_memberships"] {
        for kind in ["missing", "stale", "deleted"] {
            assert!(
                body.contains(&format!("{{table=\"{table}\",kind=\"{kind}\"}}")),
                "{table} {kind}: {body}"
            );
        }
    }
    // Prometheus's own linter reads it as a scrape.
    let mut promtool = std::process::Command::new(
        std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned()),
    )
    .args(["check", "metrics"])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()?;
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())?;
    let out = promtool.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_check_on_an_unmigrated_or_read_only_database_fails_naming_why_and_publishes_nothing(
) -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let clerk = Clerk {
        users: vec![user("user_1", "Ann", T)],
        ..Clerk::default()
    }
    .serve()
    .await;
    let https = HttpsClerk::serve(&clerk).await?;

    let unmigrated = TestDb::unmigrated().await?;
    let (code, _, stderr) =
        backfill(&kafka, &unmigrated, &https, &["--dry-run", "--prune"]).await?;
    assert_eq!(code, Some(1), "cannot tell, not 'no drift': {stderr}");
    assert!(stderr.contains("is the database migrated?"), "{stderr}");

    let read_only = TestDb::new().await?;
    sqlx::query(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        read_only.name()
    ))
    .execute(&mut read_only.admin().await?)
    .await?;
    let (code, _, stderr) = backfill(&kafka, &read_only, &https, &["--prune"]).await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("read-only database or replica"), "{stderr}");
    assert_eq!(
        kafka.total_records()?,
        0,
        "nothing published, nothing pruned"
    );
    Ok(())
}
