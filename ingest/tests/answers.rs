//! Every answer ingest gives, in-process: the real router and verifier, a fake publisher in
//! place of Kafka (no broker, no child process, milliseconds per test).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use clerk_sync_core::{Secret, Topics};
use clerk_sync_ingest::{
    BoxFuture, Error, Ingest, IngestConfig, Publish, Published, Readiness, Result, VerifiedWebhook,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tower::ServiceExt;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How the fake broker behaves.
#[derive(Clone, Copy, PartialEq)]
enum Broker {
    Acks,
    Fails,
    /// Never answers (until the test releases it).
    Hangs,
}

/// A publisher that keeps what it was given.
struct Fake {
    broker: Broker,
    published: Mutex<Vec<(String, Option<String>, String)>>,
    release: Notify,
}

impl Fake {
    fn new(broker: Broker) -> Arc<Self> {
        Arc::new(Fake {
            broker,
            published: Mutex::new(Vec::new()),
            release: Notify::new(),
        })
    }

    fn published(&self) -> Vec<(String, Option<String>, String)> {
        self.published.lock().expect("lock").clone()
    }
}

impl Publish for Fake {
    fn publish<'a>(
        &'a self,
        webhook: &'a VerifiedWebhook,
        _event_type: &'a str,
        topic: &'a str,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Published>> {
        Box::pin(async move {
            match self.broker {
                Broker::Fails => return Err(Error::PublishTimeout(Duration::from_millis(1))),
                Broker::Hangs => self.release.notified().await,
                Broker::Acks => {}
            }
            self.published.lock().expect("lock").push((
                topic.to_owned(),
                key.map(str::to_owned),
                webhook.id().to_owned(),
            ));
            Ok(Published {
                partition: 0,
                offset: 0,
            })
        })
    }

    fn readiness<'a>(
        &'a self,
        _topics: &'a [String],
        _timeout: Duration,
    ) -> BoxFuture<'a, Readiness> {
        Box::pin(async { Readiness::Ready })
    }

    fn flush(&self, _timeout: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

fn config() -> IngestConfig {
    IngestConfig {
        secrets: vec![SECRET.parse::<Secret>().expect("secret")],
        tolerance: Duration::from_secs(300),
        brokers: "unused:9092".to_owned(),
        kafka_options: Default::default(),
        publish_deadline: Duration::from_secs(5),
        topics: Topics::default(),
        body_limit: 4096,
        max_in_flight: 8,
        max_in_flight_per_peer: 8,
        request_timeout: Duration::from_secs(5),
        max_connections: 8,
        memory_limit: None,
    }
}

fn ingest(config: IngestConfig, fake: &Arc<Fake>) -> Ingest {
    Ingest::with_publisher(config, fake.clone()).expect("ingest builds")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn event(event_type: &str) -> Vec<u8> {
    json!({"type": event_type, "object": "event", "timestamp": 1_754_560_800_000_i64,
           "data": {"id": "user_1", "object": "user"}})
    .to_string()
    .into_bytes()
}

/// A delivery signed by the svix crate, as Svix signs it, `at` seconds.
fn signed_at(id: &str, body: &[u8], at: u64) -> Request<Body> {
    let signature = svix::webhooks::Webhook::new(SECRET)
        .expect("secret")
        .sign(id, at as i64, body)
        .expect("sign");
    Request::post("/webhooks/clerk")
        .header("content-type", "application/json")
        .header("svix-id", id)
        .header("svix-timestamp", at.to_string())
        .header("svix-signature", signature)
        .body(Body::from(body.to_vec()))
        .expect("request")
}

fn signed(id: &str, body: &[u8]) -> Request<Body> {
    signed_at(id, body, now())
}

/// The status and the JSON body of one request through the router.
async fn answer(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A value of the scrape: the first series that starts with `series `.
async fn scraped(router: &Router, series: &str) -> u64 {
    let request = Request::get("/metrics").body(Body::empty()).expect("req");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    let series = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Requests counted under `outcome`.
async fn metric(router: &Router, outcome: &str) -> u64 {
    scraped(
        router,
        &format!("clerk_sync_ingest_requests_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

async fn gauge(router: &Router, name: &str) -> u64 {
    scraped(router, name).await
}

#[tokio::test]
async fn a_signed_user_event_is_published_under_its_user_and_answered_200_accepted() {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(config(), &fake);
    let (router, ops) = (app.router(), app.ops_router());
    let (status, body) = answer(&router, signed("msg_1", &event("user.created"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "accepted"}));
    assert_eq!(
        fake.published(),
        [(
            "clerk.users".to_owned(),
            Some("user_1".to_owned()),
            "msg_1".to_owned()
        )]
    );
    assert_eq!(metric(&ops, "accepted").await, 1);
}

#[tokio::test]
async fn an_event_type_the_sync_does_not_mirror_is_answered_200_ignored_and_not_published() {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(config(), &fake);
    let (router, ops) = (app.router(), app.ops_router());
    let (status, body) = answer(&router, signed("msg_1", &event("session.created"))).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "ignored_type"}))
    );
    assert!(fake.published().is_empty());
    assert_eq!(metric(&ops, "ignored_type").await, 1);
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_stale_deliveries_are_401_with_a_reason_and_never_published() {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(config(), &fake);
    let (router, ops) = (app.router(), app.ops_router());
    let body = event("user.created");

    let unsigned = Request::post("/webhooks/clerk")
        .body(Body::from(body.clone()))
        .expect("request");
    let (status, reason) = answer(&router, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason["error"], "missing_signature");

    let mut forged = signed("msg_2", &body);
    *forged.body_mut() = Body::from(event("user.deleted"));
    let (status, reason) = answer(&router, forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason["error"], "invalid_signature");

    let (status, reason) = answer(&router, signed_at("msg_3", &body, now() - 3600)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason["error"], "stale_timestamp");

    assert!(fake.published().is_empty());
    assert_eq!(metric(&ops, "bad_signature").await, 2);
    assert_eq!(metric(&ops, "stale").await, 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_announced_or_streamed() {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(config(), &fake);
    let (router, ops) = (app.router(), app.ops_router());
    let big = vec![b' '; 5000];
    let (status, reason) = answer(&router, signed("msg_1", &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reason["error"], "payload_too_large");

    let mut announced = signed("msg_2", &big);
    announced
        .headers_mut()
        .insert("expect", "100-continue".parse().expect("header"));
    let (status, _) = answer(&router, announced).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(metric(&ops, "too_large").await, 2);
}

#[tokio::test]
async fn a_signed_body_that_is_not_a_clerk_event_is_400_with_the_reason() {
    let fake = Fake::new(Broker::Acks);
    let router = ingest(config(), &fake).router();
    let (status, reason) = answer(&router, signed("msg_1", b"[1, 2, 3]")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reason["error"], "bad_payload");
    assert!(reason["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("not a Clerk event envelope")));
    assert!(fake.published().is_empty());
}

#[tokio::test]
async fn a_broker_that_does_not_acknowledge_is_503_with_retry_after() {
    let fake = Fake::new(Broker::Fails);
    let app = ingest(config(), &fake);
    let (router, ops) = (app.router(), app.ops_router());
    let response = router
        .clone()
        .oneshot(signed("msg_1", &event("user.created")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(metric(&ops, "unavailable").await, 1);
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_503_overloaded_at_once_and_the_held_one_completes() {
    let fake = Fake::new(Broker::Hangs);
    let app = ingest(
        IngestConfig {
            max_in_flight: 1,
            ..config()
        },
        &fake,
    );
    let (router, ops) = (app.router(), app.ops_router());
    let held = tokio::spawn({
        let router = router.clone();
        async move { answer(&router, signed("msg_1", &event("user.created"))).await }
    });
    // The first request holds the only slot while it waits on the broker.
    while gauge(&ops, "clerk_sync_ingest_in_flight_requests").await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, reason) = answer(&router, signed("msg_2", &event("user.created"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason["error"], "overloaded");
    assert_eq!(metric(&ops, "overloaded").await, 1);
    fake.release.notify_one();
    let (status, _) = held.await.expect("joined");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fake.published().len(),
        1,
        "only the held request was published"
    );
}

/// A body that sends nothing and never ends: a slow client.
struct Stalled;

impl axum::body::HttpBody for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408_within_the_request_timeout() {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(
        IngestConfig {
            request_timeout: Duration::from_millis(200),
            ..config()
        },
        &fake,
    );
    let (router, ops) = (app.router(), app.ops_router());
    let mut request = signed("msg_1", &event("user.created"));
    *request.body_mut() = Body::new(Stalled);
    let (status, reason) = tokio::time::timeout(Duration::from_secs(5), answer(&router, request))
        .await
        .expect("answered within the timeout");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(reason["error"], "request_timeout");
    assert_eq!(metric(&ops, "timeout").await, 1);
}

#[tokio::test]
async fn readyz_follows_the_brokers_last_check_on_the_ops_listener_and_the_webhook_listener_serves_only_webhooks(
) {
    let fake = Fake::new(Broker::Acks);
    let ingest = ingest(config(), &fake);
    let (router, ops) = (ingest.router(), ingest.ops_router());
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("req");
    let (status, body) = answer(&ops, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    ingest.set_broker_ready(true);
    let (status, body) = answer(&ops, get("/readyz")).await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &json!(true)));
    assert_eq!(answer(&ops, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(answer(&ops, get("/livez")).await.0, StatusCode::OK);
    // The webhook listener serves webhooks only: an Ingress in front of it exposes nothing else.
    for path in ["/metrics", "/readyz", "/healthz", "/livez"] {
        let (status, body) = answer(&router, get(path)).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::NOT_FOUND, &json!("not_found")),
            "{path} on the webhook listener"
        );
    }
    let (status, body) = answer(&router, get("/nowhere")).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, body) = answer(&router, get("/webhooks/clerk")).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::METHOD_NOT_ALLOWED, &json!("method_not_allowed"))
    );
}

#[test]
fn a_setting_that_cannot_work_is_refused_naming_it() {
    let fake = Fake::new(Broker::Acks);
    for (config, setting) in [
        (
            IngestConfig {
                max_in_flight: 0,
                ..config()
            },
            "MAX_IN_FLIGHT",
        ),
        (
            IngestConfig {
                request_timeout: Duration::ZERO,
                ..config()
            },
            "REQUEST_TIMEOUT_MS",
        ),
        (
            IngestConfig {
                publish_deadline: Duration::from_secs(15),
                ..config()
            },
            "PUBLISH_DEADLINE_MS",
        ),
    ] {
        let error = Ingest::with_publisher(config, fake.clone())
            .err()
            .expect("refused");
        assert!(error.to_string().starts_with(setting), "{error}");
    }
}

/// A request from `peer`, as the server marks each request with its client's address.
fn from_peer(mut request: Request<Body>, peer: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().expect("addr");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    request
}

#[tokio::test]
async fn a_forged_delivery_trickling_its_body_gives_its_slot_up_at_the_bodys_own_deadline_not_the_request_timeout(
) {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(
        IngestConfig {
            request_timeout: Duration::from_secs(120),
            ..config()
        },
        &fake,
    );
    let (router, ops) = (app.router(), app.ops_router());
    // Well-formed Svix headers (they pass the pre-check), a short announced body that never
    // comes: held for BODY_GRACE plus its length at the minimum rate, then 408.
    let mut request = signed("msg_forged", &event("user.created"));
    *request.body_mut() = Body::new(Stalled);
    let (status, reason) = tokio::time::timeout(Duration::from_secs(30), answer(&router, request))
        .await
        .expect("answered long before the 120 s request timeout");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(reason["error"], "request_timeout");
    assert_eq!(gauge(&ops, "clerk_sync_ingest_in_flight_requests").await, 0);
}

#[tokio::test]
async fn one_client_address_holds_at_most_its_share_of_the_slots_and_others_are_still_served() {
    let fake = Fake::new(Broker::Acks);
    let app = ingest(
        IngestConfig {
            max_in_flight_per_peer: 2,
            request_timeout: Duration::from_secs(120),
            ..config()
        },
        &fake,
    );
    let (router, ops) = (app.router(), app.ops_router());
    let mut held = Vec::new();
    for n in 0..2 {
        let mut request = from_peer(
            signed(&format!("msg_slow_{n}"), &event("user.created")),
            "203.0.113.9",
        );
        *request.body_mut() = Body::new(Stalled);
        let router = router.clone();
        held.push(tokio::spawn(async move { answer(&router, request).await }));
    }
    wait_for_in_flight(&ops, 2).await;
    let (status, body) = answer(
        &router,
        from_peer(signed("msg_third", &event("user.created")), "203.0.113.9"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "overloaded");
    let (status, _) = answer(
        &router,
        from_peer(signed("msg_other", &event("user.created")), "198.51.100.4"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another address is served");
    for request in held {
        request.abort();
    }
}

/// Waits until `n` requests are in flight (the spawned ones have taken their slots).
async fn wait_for_in_flight(ops: &Router, n: u64) {
    for _ in 0..500 {
        if gauge(ops, "clerk_sync_ingest_in_flight_requests").await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} requests never in flight");
}

#[test]
fn limits_whose_worst_case_exceeds_the_containers_memory_are_refused_at_start_up_naming_them() {
    let fake = Fake::new(Broker::Acks);
    let limit = 384 << 20;
    let fits = IngestConfig {
        max_connections: 4096,
        max_in_flight: 256,
        body_limit: 256 * 1024,
        memory_limit: Some(limit),
        ..config()
    };
    assert!(Ingest::with_publisher(fits.clone(), fake.clone()).is_ok());
    let before = IngestConfig {
        max_in_flight: 1024,
        ..fits
    };
    let refused = Ingest::with_publisher(before, fake.clone())
        .err()
        .expect("the old defaults' 576 MiB worst case is refused")
        .to_string();
    assert!(
        refused.contains("MAX_IN_FLIGHT")
            && refused.contains("384 MiB")
            && refused.contains("640 MiB"),
        "{refused}"
    );
}
