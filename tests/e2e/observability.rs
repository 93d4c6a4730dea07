//! Metrics, lag and health, scraped from the real processes.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use crate::harness::{
    cli_output, eventually, fixture, post_fixture, run_cli, signed_post, Ingest, TestDb, TestKafka,
    WorkerProcess,
};
use crate::pipeline::{wait_until_all_committed, WAIT};

/// The value of one sample in Prometheus text, e.g. `metric{label="x"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn metrics_move_with_traffic_and_lag_rises_while_the_worker_is_stopped_then_returns_to_zero(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let client = reqwest::Client::new();
    let worker = WorkerProcess::start_with(&db, &kafka, &[("LAG_REFRESH_MS", "300")]).await?;
    for (id, name) in [
        ("msg_1", "user.created.json"),
        ("msg_2", "organization.created.json"),
        ("msg_3", "session.created.json"),
    ] {
        post_fixture(&ingest, id, name).await?;
    }
    signed_post(
        &client,
        &ingest.webhook_url(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_x",
        b"{}",
    )
    .send()
    .await?;
    wait_until_all_committed(&kafka).await?;

    let ingest_metrics = scrape(&ingest.base).await;
    assert_eq!(
        sample(
            &ingest_metrics,
            r#"clerk_sync_ingest_requests_total{outcome="accepted"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &ingest_metrics,
            r#"clerk_sync_ingest_requests_total{outcome="ignored_type"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &ingest_metrics,
            r#"clerk_sync_ingest_requests_total{outcome="bad_signature"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &ingest_metrics,
            "clerk_sync_ingest_produce_duration_seconds_count"
        ),
        Some(2.0)
    );

    let users = kafka.topics.users.clone();
    let worker_metrics = eventually("worker counters and zero lag", WAIT, || async {
        let m = scrape(&worker.base).await;
        let applied = sample(
            &m,
            &format!(r#"clerk_sync_worker_events_total{{outcome="applied",topic="{users}"}}"#),
        );
        let lag = sum_of(&m, "clerk_sync_consumer_lag_offsets{");
        (applied == Some(1.0) && lag == 0.0 && m.contains("clerk_sync_consumer_lag_offsets{"))
            .then_some(m)
    })
    .await;
    assert!(
        sample(&worker_metrics, "clerk_sync_worker_batch_size_events_count").unwrap_or(0.0) >= 1.0
    );
    assert!(sample(&worker_metrics, "clerk_sync_worker_freshness_seconds").unwrap_or(-1.0) > 0.0);

    // Stop the worker; lag shows in the broker's view.
    assert!(worker.stop().await?.success());
    post_fixture(&ingest, "msg_4", "user.updated.json").await?;
    let lag: Value = serde_json::from_str(
        &run_cli(&kafka, &["lag", "--json", "--group", &kafka.group], &[]).await?,
    )?;
    let total: i64 = lag
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["lag"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 1, "{lag}");
    let age: f64 = lag
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["oldest_unapplied_age_seconds"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(age >= 0.0);

    // Back again: it catches up and both lag gauges return to zero.
    let worker = WorkerProcess::start_with(&db, &kafka, &[("LAG_REFRESH_MS", "300")]).await?;
    eventually("lag back to zero", WAIT, || async {
        let m = scrape(&worker.base).await;
        let offsets = sum_of(&m, "clerk_sync_consumer_lag_offsets{");
        let seconds = sum_of(&m, "clerk_sync_consumer_lag_seconds{");
        let applied = sample(
            &m,
            &format!(r#"clerk_sync_worker_events_total{{outcome="applied",topic="{users}"}}"#),
        );
        (applied == Some(1.0) && offsets == 0.0 && seconds == 0.0).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn the_lag_command_reports_log_end_committed_and_lag_for_a_group_with_known_offsets(
) -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let users = kafka.topics.users.clone();
    // Five records on one partition (same key), nothing committed yet.
    for i in 0..5 {
        kafka
            .produce(
                &users,
                "user_1",
                fixture("user.created.json").as_slice(),
                &format!("msg_{i}"),
            )
            .await?;
    }
    let lag: Value = serde_json::from_str(
        &run_cli(&kafka, &["lag", "--json", "--group", &kafka.group], &[]).await?,
    )?;
    let partition = lag
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["topic"] == users.as_str() && p["log_end_offset"] == 5)
        .cloned()
        .expect("the partition holding the records");
    assert_eq!(partition["lag"], 5);
    assert_eq!(partition["committed_offset"], Value::Null);
    assert!(
        partition["oldest_unapplied_age_seconds"]
            .as_f64()
            .unwrap_or(-1.0)
            >= 0.0
    );

    // The group commits offset 3 on that partition.
    let p = partition["partition"].as_i64().expect("partition") as i32;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&users, p, Offset::Offset(3))?;
    consumer.commit(&tpl, CommitMode::Sync)?;

    let table = run_cli(&kafka, &["lag", "--group", &kafka.group], &[]).await?;
    let row = table
        .lines()
        .find(|l| l.starts_with(&users) && l.split_whitespace().nth(1) == Some(&p.to_string()))
        .expect("a row for the partition");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &columns[1..5],
        &[p.to_string().as_str(), "5", "3", "2"],
        "{table}"
    );

    let over = cli_output(
        &kafka,
        &["lag", "--group", &kafka.group, "--max-lag", "1"],
        &[],
    )
    .await?;
    assert_eq!(
        over.status.code(),
        Some(3),
        "--max-lag 1 finds a partition lagging by 2: exit code 3"
    );
    run_cli(
        &kafka,
        &["lag", "--group", &kafka.group, "--max-lag", "2"],
        &[],
    )
    .await?;
    Ok(())
}

// Multi-threaded: the receiver's tasks run while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_http_request_through_the_broker_to_the_database_exported_over_https(
) -> anyhow::Result<()> {
    let receiver = crate::harness::otlp::OtlpReceiver::start_over_tls().await?;
    assert!(receiver.endpoint.starts_with("https://"));
    let env = receiver.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &env).await?;
    let _worker = WorkerProcess::start_with(&db, &kafka, &env).await?;
    let response = post_fixture(&ingest, "msg_traced", "user.created.json").await?;
    assert_eq!(response.status(), 200);

    let (webhook, applied) = eventually("both processes' spans", WAIT, || async {
        let spans = receiver.spans();
        let webhook = spans
            .iter()
            .find(|s| s.name == "webhook" && s.service == "clerk-sync-ingest")?
            .clone();
        let applied = spans
            .iter()
            .find(|s| s.name == "apply_event" && s.service == "clerk-sync-worker")?
            .clone();
        Some((webhook, applied))
    })
    .await;
    assert!(!webhook.trace_id.is_empty());
    assert_eq!(
        applied.trace_id, webhook.trace_id,
        "the worker continues the ingest request's trace"
    );
    let publish = receiver
        .spans()
        .into_iter()
        .find(|s| s.name == "publish" && s.trace_id == webhook.trace_id)
        .expect("the publish span");
    assert_eq!(
        applied.parent_span_id, publish.span_id,
        "apply_event is a child of the produce span"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_readiness_follows_broker_reachability() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut kafka = TestKafka::private().await?;
    let worker = WorkerProcess::start_with(&db, &kafka, &[("LAG_REFRESH_MS", "300")]).await?;
    let ready = |expected: u16| {
        let url = format!("{}/readyz", worker.base);
        async move {
            let r = reqwest::get(&url).await.ok()?;
            let status = r.status().as_u16();
            let body: Value = r.json().await.ok()?;
            (status == expected).then_some(body)
        }
    };
    eventually("ready", WAIT, || ready(200)).await;
    kafka.broker().stop_node(1).await?;
    let body = eventually("not ready while the broker is unreachable", WAIT, || {
        ready(503)
    })
    .await;
    assert_eq!(body["broker"], false);
    kafka.broker().start_node(1).await?;
    eventually("ready again", WAIT, || ready(200)).await;
    Ok(())
}

#[tokio::test]
async fn a_request_cut_off_by_the_timeout_is_counted_and_leaves_nothing_in_flight(
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[("REQUEST_TIMEOUT_MS", "1000")]).await?;
    let addr = ingest.webhook_base.trim_start_matches("http://").to_owned();
    // A body announced but never finished, under headers shaped as Svix's (they are checked
    // before the body is read; the signature only once it is).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream
        .write_all(
            format!("POST /webhooks/clerk HTTP/1.1\r\nhost: x\r\nsvix-id: msg_slow\r\nsvix-timestamp: {now}\r\nsvix-signature: v1,AAAA\r\ncontent-length: 5000\r\n\r\n{{\"type\":").as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains(r#""error":"request_timeout""#),
        "{answer}"
    );
    let text = scrape(&ingest.base).await;
    assert_eq!(
        sample(
            &text,
            r#"clerk_sync_ingest_requests_total{outcome="timeout"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "clerk_sync_ingest_in_flight_requests"),
        Some(0.0),
        "{text}"
    );
    Ok(())
}
