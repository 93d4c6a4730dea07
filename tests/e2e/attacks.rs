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
        .post(format!("{}/webhooks/other", ingest.base))
        .send()
        .await?;
    assert_eq!(wrong_path.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        wrong_path.json::<serde_json::Value>().await?["error"],
        "not_found"
    );

    // What a client library will not send: lying Content-Length, chunked over the limit, huge headers.
    let addr = ingest.base.trim_start_matches("http://").to_owned();
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
