//! Backfill against a local stand-in of Clerk's Backend API (wiremock behind a TLS front whose
//! certificate a test CA signed, trusted through `SSL_CERT_FILE`), through the real binary,
//! broker, worker and database.

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::tls::{TestCa, TlsFront};
use crate::harness::{
    fixture, run_cli, signed_post, Ingest, TestDb, TestKafka, WorkerProcess, TEST_SECRET,
};
use crate::pipeline::wait_until_all_committed;

const T: i64 = 1_754_560_800_000;
pub const KEY: &str = "sk_test_backfill";

fn user(id: &str, first: &str, updated_at: i64) -> Value {
    json!({"object": "user", "id": id, "first_name": first, "last_name": null,
           "email_addresses": [{"id": "idn_1", "email_address": format!("{id}@example.com")}],
           "primary_email_address_id": "idn_1", "public_metadata": {}, "created_at": T, "updated_at": updated_at})
}

fn org() -> Value {
    json!({"object": "organization", "id": "org_1", "name": "Acme", "slug": "acme", "public_metadata": {},
           "created_at": T, "updated_at": T})
}

fn membership() -> Value {
    json!({"object": "organization_membership", "id": "orgmem_1", "role": "org:admin", "permissions": [],
           "organization": org(), "public_user_data": {"user_id": "user_1", "identifier": "user_1@example.com"},
           "created_at": T, "updated_at": T})
}

pub async fn clerk_stand_in() -> MockServer {
    let server = MockServer::start().await;
    let page = |resource: &str, offset: &str, body: Value| {
        Mock::given(method("GET"))
            .and(path(format!("/v1/{resource}")))
            .and(query_param("offset", offset))
            .and(query_param("order_by", "+created_at"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    // The first request for users is rate limited.
    Mock::given(method("GET"))
        .and(path("/v1/users"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"errors": []})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    page(
        "organizations",
        "0",
        json!({"data": [org()], "total_count": 1}),
    )
    .mount(&server)
    .await;
    // Users: two pages of two and one (page size 2). user_1 as listed here is older than the
    // webhook that updates it meanwhile.
    page(
        "users",
        "0",
        json!([user("user_1", "Old", T), user("user_2", "Bea", T)]),
    )
    .mount(&server)
    .await;
    page("users", "2", json!([user("user_3", "Cy", T)]))
        .mount(&server)
        .await;
    page(
        "organization_memberships",
        "0",
        json!({"data": [membership()], "total_count": 1}),
    )
    .mount(&server)
    .await;
    server
}

/// `server` served over https:// with a certificate `ca` signed.
async fn over_tls(ca: &TestCa, server: &MockServer) -> anyhow::Result<TlsFront> {
    TlsFront::start(ca.server_identity()?, *server.address()).await
}

/// A stand-in served over https:// by a CA of its own, and the settings a backfill reaches it
/// with, trusting that CA as an operator trusts a corporate one.
pub struct HttpsClerk {
    ca: TestCa,
    front: TlsFront,
}

impl HttpsClerk {
    pub async fn serve(server: &MockServer) -> anyhow::Result<Self> {
        let ca = TestCa::new("clerk-sync test CA")?;
        let front = over_tls(&ca, server).await?;
        Ok(HttpsClerk { ca, front })
    }

    pub fn url(&self) -> String {
        self.front.url()
    }

    /// Another stand-in served over https:// by the same CA (a Pushgateway, say).
    pub async fn also_serve(&self, server: &MockServer) -> anyhow::Result<TlsFront> {
        over_tls(&self.ca, server).await
    }

    pub fn env<'a>(&'a self, url: &'a str) -> [(&'a str, &'a str); 3] {
        [
            ("CLERK_SECRET_KEY", KEY),
            ("CLERK_API_URL", url),
            ("SSL_CERT_FILE", self.ca.pem_file().to_str().expect("path")),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_over_https_several_pages_and_a_rate_limit_ends_in_clerks_state_and_a_second_changes_nothing(
) -> anyhow::Result<()> {
    let clerk = clerk_stand_in().await;
    let https = HttpsClerk::serve(&clerk).await?;
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;

    // A live webhook: user_1 was updated after the backfill's page was read.
    let mut newer: Value = serde_json::from_slice(&fixture("user.updated.json"))?;
    newer["data"] = user("user_1", "New", T + 1000);
    newer["timestamp"] = json!(T + 1001);
    let client = reqwest::Client::new();
    let r = signed_post(
        &client,
        &ingest.webhook_url(),
        TEST_SECRET,
        "msg_live",
        newer.to_string().as_bytes(),
    )
    .send()
    .await?;
    assert_eq!(r.status(), 200);

    let state = tempfile::NamedTempFile::new()?;
    let args = [
        "backfill",
        "--page-size",
        "2",
        "--rate",
        "50",
        "--state-file",
        state.path().to_str().expect("path"),
    ];
    let uri = https.url();
    let env = https.env(&uri);
    let dry = run_cli(&kafka, &[&args[..], &["--dry-run"]].concat(), &env).await?;
    assert!(
        dry.contains("listed 1 organizations, 3 users, 1 organization_memberships; published 0"),
        "{dry}"
    );
    assert!(
        dry.contains("1 rate-limited"),
        "the 429 was waited out: {dry}"
    );
    let out = run_cli(&kafka, &args, &env).await?;
    assert!(out.contains("published 5 events"), "{out}");

    wait_until_all_committed(&kafka).await?;
    let users: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT clerk_id, first_name FROM users ORDER BY clerk_id")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(
        users,
        vec![
            ("user_1".into(), Some("New".into())), // the webhook's newer version wins
            ("user_2".into(), Some("Bea".into())),
            ("user_3".into(), Some("Cy".into())),
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM organizations WHERE name = 'Acme'")
            .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM org_memberships WHERE role = 'org:admin' AND deleted_at IS NULL"
        )
        .await,
        1
    );

    // A second backfill publishes the same object versions again: nothing changes.
    let before: Vec<String> = sqlx::query_scalar(
        "SELECT synced_at::text FROM users UNION ALL SELECT synced_at::text FROM organizations UNION ALL SELECT synced_at::text FROM org_memberships",
    )
    .fetch_all(&db.pool)
    .await?;
    run_cli(&kafka, &args, &env).await?;
    wait_until_all_committed(&kafka).await?;
    let after: Vec<String> = sqlx::query_scalar(
        "SELECT synced_at::text FROM users UNION ALL SELECT synced_at::text FROM organizations UNION ALL SELECT synced_at::text FROM org_memberships",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(before, after, "a second backfill changes nothing");
    Ok(())
}

#[tokio::test]
async fn a_missing_secret_key_fails_at_once_with_the_setting_named() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let err = run_cli(&kafka, &["backfill"], &[])
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("CLERK_SECRET_KEY"), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_interrupted_backfill_resumes_where_it_stopped() -> anyhow::Result<()> {
    let server = MockServer::start().await;
    let ok = |resource: &str, offset: &str, body: Value| {
        Mock::given(method("GET"))
            .and(path(format!("/v1/{resource}")))
            .and(query_param("offset", offset))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    ok("organizations", "0", json!({"data": [org()]}))
        .expect(1)
        .mount(&server)
        .await;
    ok(
        "users",
        "0",
        json!([user("user_1", "A", T), user("user_2", "B", T)]),
    )
    .expect(1)
    .mount(&server)
    .await;
    // The second page fails once: the first run stops there.
    Mock::given(method("GET"))
        .and(path("/v1/users"))
        .and(query_param("offset", "2"))
        .respond_with(ResponseTemplate::new(403))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    ok("users", "2", json!([user("user_3", "C", T)]))
        .mount(&server)
        .await;
    ok(
        "organization_memberships",
        "0",
        json!({"data": [membership()]}),
    )
    .mount(&server)
    .await;

    let kafka = TestKafka::new().await?;
    let state = tempfile::NamedTempFile::new()?;
    let https = HttpsClerk::serve(&server).await?;
    let uri = https.url();
    let env = https.env(&uri);
    let args = [
        "backfill",
        "--page-size",
        "2",
        "--rate",
        "50",
        "--state-file",
        state.path().to_str().expect("path"),
    ];
    assert!(
        run_cli(&kafka, &args, &env).await.is_err(),
        "the first run stops at the failing page"
    );
    let resumed = run_cli(&kafka, &[&args[..], &["--resume"]].concat(), &env).await?;
    assert!(
        resumed
            .contains("listed 0 organizations, 1 users, 1 organization_memberships; published 2"),
        "{resumed}"
    );
    assert_eq!(
        kafka.total_records()?,
        5,
        "every object published exactly once across both runs"
    );
    server.verify().await;
    Ok(())
}

#[tokio::test]
async fn a_clerk_api_whose_certificate_no_trusted_ca_signed_fails_at_once_naming_certificate_verification(
) -> anyhow::Result<()> {
    let clerk = clerk_stand_in().await;
    let signer = TestCa::new("a CA nobody trusts")?;
    let trusted = TestCa::new("the CA the operator trusts")?;
    let front = over_tls(&signer, &clerk).await?;
    let kafka = TestKafka::new().await?;
    let uri = front.url();
    let env = [
        ("CLERK_SECRET_KEY", KEY),
        ("CLERK_API_URL", uri.as_str()),
        ("SSL_CERT_FILE", trusted.pem_file().to_str().expect("path")),
        ("RUST_LOG", "warn"),
    ];
    let err = run_cli(&kafka, &["backfill", "--dry-run"], &env)
        .await
        .expect_err("an untrusted certificate fails");
    let text = err.to_string();
    assert!(
        text.contains("certificate verify failed") && text.contains("SSL_CERT_FILE"),
        "the cause and the remedy are named: {text}"
    );
    assert!(
        !text.contains("retrying"),
        "a certificate is not retried: {text}"
    );
    assert!(
        clerk
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "no request reached the stand-in"
    );
    Ok(())
}

#[tokio::test]
async fn a_plain_http_clerk_api_url_is_refused_at_start_up_unless_it_is_a_loopback_address(
) -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    for url in [
        "http://api.example.com",
        "http://10.0.0.1:8080",
        "ftp://api.clerk.com",
    ] {
        let env = [("CLERK_SECRET_KEY", KEY), ("CLERK_API_URL", url)];
        let err = run_cli(&kafka, &["backfill", "--dry-run"], &env)
            .await
            .expect_err(url);
        let text = err.to_string();
        assert!(text.contains("CLERK_API_URL"), "{url}: {text}");
        assert!(!text.contains(KEY), "the key is never printed: {text}");
    }
    // A local stand-in over plain http on the loopback address is allowed.
    let clerk = clerk_stand_in().await;
    let uri = clerk.uri();
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    let env = [("CLERK_SECRET_KEY", KEY), ("CLERK_API_URL", uri.as_str())];
    let out = run_cli(&kafka, &["backfill", "--dry-run", "--rate", "50"], &env).await?;
    assert!(out.contains("dry run: listed"), "{out}");
    Ok(())
}
