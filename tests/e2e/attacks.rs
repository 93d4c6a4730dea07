//! The attack suite: hostile requests against the running ingest. Each gets the right status,
//! and nothing is ever published except the one valid request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use svix::webhooks::Webhook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{fixture, Ingest, TestKafka, TEST_SECRET};

const OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    Webhook::new(secret)
        .and_then(|w| w.sign(id, ts, body))
        .expect("sign")
}

struct Attack {
    name: &'static str,
    id: String,
    ts: String,
    signature: Option<String>,
    body: Vec<u8>,
    drop_header: Option<&'static str>,
    expect: StatusCode,
}

fn attack(name: &'static str, expect: StatusCode) -> Attack {
    let body = fixture("user.created.json");
    let ts = now();
    Attack {
        name,
        id: "msg_attack".to_owned(),
        ts: ts.to_string(),
        signature: Some(sign(TEST_SECRET, "msg_attack", ts, &body)),
        body,
        drop_header: None,
        expect,
    }
}

/// A raw HTTP/1.1 exchange, for what a well-behaved client library refuses to send.
async fn raw(addr: &str, request: &[u8]) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the server closes a connection that sent `request` and then nothing more (within
/// 10 s; the server's own bound is the 3 s request timeout).
async fn closed_by_server(addr: &str, request: &[u8]) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .is_ok()
}

#[tokio::test]
async fn hostile_requests_are_rejected_and_nothing_is_published() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(
        &kafka,
        &[
            ("WEBHOOK_BODY_LIMIT", "65536"),
            ("REQUEST_TIMEOUT_MS", "3000"),
        ],
    )
    .await?;
    let url = ingest.webhook_url();
    let client = reqwest::Client::new();
    let body = fixture("user.created.json");
    let ts = now();
    let mut attacks = Vec::new();

    let mut a = attack("wrong secret", StatusCode::UNAUTHORIZED);
    a.signature = Some(sign(OTHER_SECRET, &a.id, ts, &a.body));
    attacks.push(a);
    let mut a = attack("one flipped byte in the body", StatusCode::UNAUTHORIZED);
    a.body[10] ^= 0x01;
    attacks.push(a);
    let mut a = attack("one flipped byte in the id", StatusCode::UNAUTHORIZED);
    a.id = "msg_attacl".to_owned();
    attacks.push(a);
    let mut a = attack(
        "one flipped byte in the timestamp",
        StatusCode::UNAUTHORIZED,
    );
    a.ts = (ts + 1).to_string();
    attacks.push(a);
    let mut a = attack("the signature of another message", StatusCode::UNAUTHORIZED);
    a.signature = Some(sign(
        TEST_SECRET,
        &a.id,
        ts,
        &fixture("organization.created.json"),
    ));
    attacks.push(a);
    for (name, skew) in [
        ("a timestamp 6 minutes old", -360),
        ("a timestamp 6 minutes ahead", 360),
        ("a valid request replayed after the window", -301),
    ] {
        let mut a = attack(name, StatusCode::UNAUTHORIZED);
        a.ts = (ts + skew).to_string();
        a.signature = Some(sign(TEST_SECRET, &a.id, ts + skew, &a.body));
        attacks.push(a);
    }
    for header in ["svix-id", "svix-timestamp", "svix-signature"] {
        let mut a = attack("a missing header", StatusCode::UNAUTHORIZED);
        a.drop_header = Some(header);
        attacks.push(a);
    }
    for (name, signature) in [
        (
            "a v2 signature",
            format!(
                "v2,{}",
                sign(TEST_SECRET, "msg_attack", ts, &body).trim_start_matches("v1,")
            ),
        ),
        (
            "a malformed signature list",
            "v1 garbage ,,, v1,".to_owned(),
        ),
        ("an empty signature", String::new()),
    ] {
        let mut a = attack(name, StatusCode::UNAUTHORIZED);
        a.signature = Some(signature);
        attacks.push(a);
    }
    let mut a = attack("a non-UTF-8 body", StatusCode::UNAUTHORIZED);
    a.body = vec![0xff, 0xfe, 0x00, 0x7b];
    attacks.push(a);
    let mut a = attack("a body over the limit", StatusCode::PAYLOAD_TOO_LARGE);
    a.body = vec![b' '; 70_000];
    attacks.push(a);

    for a in &attacks {
        let mut request = client
            .post(&url)
            .header("svix-id", &a.id)
            .header("svix-timestamp", &a.ts)
            .body(a.body.clone());
        if let Some(sig) = &a.signature {
            request = request.header("svix-signature", sig);
        }
        let mut built = request.build()?;
        if let Some(h) = a.drop_header {
            built.headers_mut().remove(h);
        }
        let response = client.execute(built).await?;
        assert_eq!(response.status(), a.expect, "{}", a.name);
        let error: serde_json::Value = response.json().await?;
        assert!(
            error["error"].is_string() && error["message"].is_string(),
            "{}: JSON reason",
            a.name
        );
    }

    // Wrong method and path.
    let wrong_method = client.get(&url).send().await?;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        wrong_method.json::<serde_json::Value>().await?["error"],
        "method_not_allowed"
    );
    let wrong_path = client
        .post(format!("{}/webhooks/other", ingest.webhook_base))
        .send()
        .await?;
    assert_eq!(wrong_path.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        wrong_path.json::<serde_json::Value>().await?["error"],
        "not_found"
    );
    // The webhook port serves webhooks only: metrics and health are on OPS_LISTEN_ADDR.
    for path in ["/metrics", "/readyz", "/healthz", "/livez"] {
        let answer = client
            .get(format!("{}{path}", ingest.webhook_base))
            .send()
            .await?;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
        let ops = client.get(format!("{}{path}", ingest.base)).send().await?;
        assert!(
            ops.status().is_success(),
            "{path} on the ops port: {}",
            ops.status()
        );
    }

    // What a client library will not send: lying Content-Length, chunked over the limit, huge headers.
    let addr = ingest.webhook_base.trim_start_matches("http://").to_owned();
    let signature = sign(TEST_SECRET, "msg_raw", ts, &body);
    let head = |extra: &str| {
        format!("POST /webhooks/clerk HTTP/1.1\r\nhost: x\r\nsvix-id: msg_raw\r\nsvix-timestamp: {ts}\r\nsvix-signature: {signature}\r\n{extra}")
    };
    let mut lying = head("content-length: 100\r\n\r\n").into_bytes();
    lying.extend_from_slice(&body);
    let answer = raw(&addr, &lying).await;
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "lying Content-Length: {answer}"
    );
    let mut chunked = head("transfer-encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b' '; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&addr, &chunked).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "chunked over the limit: {answer}"
    );
    let huge = head(&format!(
        "x-padding: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(512 * 1024)
    ));
    let answer = raw(&addr, huge.as_bytes()).await;
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "huge headers: {}",
        &answer[..answer.len().min(80)]
    );
    // A slow client that never finishes its body is cut off.
    let answer = raw(
        &addr,
        head("content-length: 5000\r\n\r\n{\"type\":").as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
        "slow body: {answer}"
    );

    // Nor may a client hold a connection by trickling its headers, or by sending nothing.
    for (what, request) in [
        (
            "unfinished headers",
            &b"POST /webhooks/clerk HTTP/1.1\r\nhost: x\r\n"[..],
        ),
        ("silence", &b""[..]),
    ] {
        assert!(
            closed_by_server(&addr, request).await,
            "{what}: the connection was still open after 10 s"
        );
    }

    assert_eq!(kafka.total_records()?, 0, "nothing hostile was published");

    // A valid request carrying an extra signature (a rotated secret) is accepted.
    let valid_ts = now();
    let both = format!(
        "{} {}",
        sign(OTHER_SECRET, "msg_valid", valid_ts, &body),
        sign(TEST_SECRET, "msg_valid", valid_ts, &body)
    );
    let ok = client
        .post(&url)
        .header("svix-id", "msg_valid")
        .header("svix-timestamp", valid_ts.to_string())
        .header("svix-signature", both)
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        kafka.total_records()?,
        1,
        "exactly the valid request was published"
    );
    Ok(())
}

/// A request head with the Svix headers `headers` (name, value) and `extra` lines, for raw use.
fn raw_head(headers: &[(&str, String)], extra: &str) -> String {
    let mut head = "POST /webhooks/clerk HTTP/1.1\r\nhost: x\r\n".to_owned();
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(extra);
    head
}

/// A named set of Svix headers and the status it must get.
type HeaderCase = (&'static str, Vec<(&'static str, String)>, u16);

/// The status code of a raw answer (0 when there is none).
fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_hold_no_slot_and_end_user_input_of_any_shape_is_applied(
) -> anyhow::Result<()> {
    use clerk_sync_core::routing_agreement::{nested, user_event_with};

    use crate::harness::{TestDb, WorkerProcess};

    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(
        &kafka,
        &[
            ("MAX_IN_FLIGHT", "4"),
            ("MAX_CONNECTIONS", "64"),
            ("REQUEST_TIMEOUT_MS", "3000"),
            ("WEBHOOK_BODY_LIMIT", "1048576"),
        ],
    )
    .await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    let url = ingest.webhook_url();
    let addr = ingest.webhook_base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let body = fixture("user.created.json");
    let ts = now();

    // MAX_IN_FLIGHT slow unsigned uploads: answered 401 from their head, holding no slot.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(raw_head(&[], "content-length: 100000\r\n\r\n{\"type\":").as_bytes())
            .await?;
        slow.push(stream);
    }
    for stream in &mut slow {
        let mut answer = vec![0; 12];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer)).await??;
        assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 401);
    }
    let signed = |id: &str, body: &[u8]| {
        let ts = now();
        (ts, sign(TEST_SECRET, id, ts, body))
    };
    let (vts, vsig) = signed("msg_after_slow", &body);
    let ok = client
        .post(&url)
        .header("svix-id", "msg_after_slow")
        .header("svix-timestamp", vts.to_string())
        .header("svix-signature", vsig)
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(
        ok.status(),
        StatusCode::OK,
        "a real delivery after slow unsigned uploads"
    );
    drop(slow);

    // A huge announced body behind Expect: 100-continue is refused before any of it is sent.
    let (hts, hsig) = signed("msg_expect", &body);
    let answer = raw(
        &addr,
        raw_head(
            &[
                ("svix-id", "msg_expect".to_owned()),
                ("svix-timestamp", hts.to_string()),
                ("svix-signature", hsig.clone()),
            ],
            "expect: 100-continue\r\ncontent-length: 10000000000\r\n\r\n",
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    // Content-Length together with chunked: refused, never published.
    let answer = raw(
        &addr,
        raw_head(
            &[
                ("svix-id", "msg_expect".to_owned()),
                ("svix-timestamp", hts.to_string()),
                ("svix-signature", hsig),
            ],
            "content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .as_bytes(),
    )
    .await;
    assert!(!(200..300).contains(&status_of(&answer)), "{answer}");

    // Svix headers in every shape: what each is answered.
    let valid_sig = |id: &str, ts: i64| sign(TEST_SECRET, id, ts, &body);
    let cases: Vec<HeaderCase> = vec![
        (
            "webhook-* headers alone",
            vec![
                ("webhook-id", "msg_std".to_owned()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", valid_sig("msg_std", ts)),
            ],
            200,
        ),
        (
            "svix-* and webhook-* agreeing",
            vec![
                ("svix-id", "msg_both".to_owned()),
                ("webhook-id", "msg_both".to_owned()),
                ("svix-timestamp", ts.to_string()),
                ("webhook-timestamp", ts.to_string()),
                ("svix-signature", valid_sig("msg_both", ts)),
            ],
            200,
        ),
        (
            "svix-id and webhook-id disagreeing",
            vec![
                ("svix-id", "msg_mixed".to_owned()),
                ("webhook-id", "msg_other".to_owned()),
                ("svix-timestamp", ts.to_string()),
                ("svix-signature", valid_sig("msg_mixed", ts)),
            ],
            401,
        ),
        (
            "svix-id twice",
            vec![
                ("svix-id", "msg_twice".to_owned()),
                ("svix-id", "msg_twice_b".to_owned()),
                ("svix-timestamp", ts.to_string()),
                ("svix-signature", valid_sig("msg_twice", ts)),
            ],
            401,
        ),
        (
            "svix-signature twice",
            vec![
                ("svix-id", "msg_sig2".to_owned()),
                ("svix-timestamp", ts.to_string()),
                ("svix-signature", "v1,AAAA".to_owned()),
                ("svix-signature", valid_sig("msg_sig2", ts)),
            ],
            401,
        ),
        (
            "1,500 signatures, the valid one last",
            vec![
                ("svix-id", "msg_1500".to_owned()),
                ("svix-timestamp", ts.to_string()),
                (
                    "svix-signature",
                    format!("{}{}", "v1,AAAA ".repeat(1_499), valid_sig("msg_1500", ts)),
                ),
            ],
            401,
        ),
        (
            // 40 KB of head: past the 16 KiB every connection may hold, refused by hyper.
            "5,000 signatures, the valid one last",
            vec![
                ("svix-id", "msg_5000".to_owned()),
                ("svix-timestamp", ts.to_string()),
                (
                    "svix-signature",
                    format!("{}{}", "v1,AAAA ".repeat(4_999), valid_sig("msg_5000", ts)),
                ),
            ],
            431,
        ),
    ];
    let mut timestamps: Vec<(&str, String)> = vec![
        ("+now", format!("+{ts}")),
        ("000now", format!("000{ts}")),
        ("milliseconds", format!("{}", ts * 1000)),
        ("-1", "-1".to_owned()),
        ("beyond i64", "99999999999999999999999".to_owned()),
    ];
    let mut all = cases;
    for (name, value) in timestamps.drain(..) {
        all.push((
            name,
            vec![
                ("svix-id", "msg_ts".to_owned()),
                ("svix-timestamp", value),
                ("svix-signature", valid_sig("msg_ts", ts)),
            ],
            401,
        ));
    }
    for (name, headers, expected) in &all {
        let mut request = raw_head(
            headers,
            &format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ),
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let answer = raw(&addr, &request).await;
        assert_eq!(status_of(&answer), *expected, "{name}: {answer}");
    }

    // What an end user controls, signed as Svix signs it: accepted and applied.
    let mut hostile = Vec::new();
    for (i, depth) in [200, 5_000, 50_000].into_iter().enumerate() {
        hostile.push((
            format!("user_deep{i}"),
            user_event_with(&nested(depth, "k", "1"), "Ada")
                .replace("user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a", &format!("user_deep{i}")),
        ));
    }
    hostile.push((
        "user_names".to_owned(),
        user_event_with(
            r#"{"\u0000\ud800\u202e":"\u001b[2J"}"#,
            r"A\u0000da\ud800 \u202eevil\u001b[31m",
        )
        .replace("user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a", "user_names"),
    ));
    // data.id twice: the last wins, for routing and for applying alike.
    hostile.push((
        "user_last".to_owned(),
        user_event_with("{}", "Dup")
            .replace("user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a", "user_last")
            .replace(r#""data":{"#, r#""data":{"id":"user_first","#),
    ));
    for (i, (_, event)) in hostile.iter().enumerate() {
        let id = format!("msg_hostile{i}");
        let (hts, hsig) = signed(&id, event.as_bytes());
        let r = client
            .post(&url)
            .header("svix-id", &id)
            .header("svix-timestamp", hts.to_string())
            .header("svix-signature", hsig)
            .body(event.clone())
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::OK, "hostile event {i}");
    }

    // 10,000 pipelined unsigned requests whose answers are never read.
    let pipelined = raw_head(&[], "content-length: 2\r\n\r\n{}").repeat(10_000);
    if let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            stream.write_all(pipelined.as_bytes()),
        )
        .await;
    }
    // Many idle connections: beyond MAX_CONNECTIONS a connection is answered 503 at once.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(&addr).await?);
    }
    let refused = raw(&addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status_of(&refused), 503, "{refused}");
    drop(idle);
    // Once they are gone (closed by the clients or, idle, by the server), deliveries go through.
    let delivered = crate::harness::eventually(
        "a delivery after the idle connections",
        Duration::from_secs(30),
        || async {
            let (ts, sig) = signed("msg_after_idle", &body);
            let r = client
                .post(&url)
                .header("svix-id", "msg_after_idle")
                .header("svix-timestamp", ts.to_string())
                .header("svix-signature", sig)
                .body(body.clone())
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    let () = delivered;

    crate::pipeline::wait_until_all_committed(&kafka).await?;
    assert_eq!(kafka.record_count(&kafka.dlq)?, 0, "no dead letter");
    for (id, _) in &hostile {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM users WHERE clerk_id = '{id}'"
            ))
            .await,
            1,
            "{id} applied"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE clerk_id = 'user_first'")
            .await,
        0
    );
    let name: String =
        sqlx::query_scalar("SELECT first_name FROM users WHERE clerk_id = 'user_names'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(name, "Ada\u{FFFD} \u{202E}evil\u{1b}[31m");
    // Published: the signed deliveries only (fixture user: 3 shapes; hostile: 5).
    let synced: i64 = kafka
        .topics
        .synced()
        .iter()
        .map(|t| kafka.record_count(t).unwrap_or(-1))
        .sum();
    assert_eq!(
        synced,
        3 + hostile.len() as i64 + 1,
        "nothing unsigned was published"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readyz_flood_with_the_broker_down_is_answered_from_kept_state() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    // Nothing listens there: every broker call would wait for its timeout.
    let ingest = Ingest::start_with_brokers(&kafka, "127.0.0.1:1", &[]).await?;
    let client = reqwest::Client::new();
    let readyz = format!("{}/readyz", ingest.base);
    let flood: Vec<_> = (0..500)
        .map(|_| {
            let (client, readyz) = (client.clone(), readyz.clone());
            tokio::spawn(async move {
                let r = client.get(&readyz).send().await.ok()?;
                let status = r.status();
                let body: serde_json::Value = r.json().await.ok()?;
                Some((status, body))
            })
        })
        .collect();
    for answer in flood {
        let (status, body) = answer.await?.expect("answered");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["ready"], false, "{body}");
    }
    // Webhooks are still answered (503: the broker is down) while probes flood.
    let body = fixture("user.created.json");
    let ts = now();
    let r = client
        .post(ingest.webhook_url())
        .header("svix-id", "msg_flood")
        .header("svix-timestamp", ts.to_string())
        .header("svix-signature", sign(TEST_SECRET, "msg_flood", ts, &body))
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    Ok(())
}
