//! Allocations per webhook in ingest's own handler (verify, route, publish, answer), counted by
//! an instrumented global allocator around requests handed straight to the router (no sockets,
//! one thread), beside a router that answers at once: what ingest allocates beyond the HTTP
//! stack. Prints figures; asserts nothing. `scripts/bench` runs it with KAFKA_BROKERS (and
//! DATABASE_URL, for the topic set-up it shares with the pipeline benchmark).
#![allow(dead_code)] // the shared bench modules carry what the other benchmarks use

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::routing::post;
use axum::{Json, Router};
use clerk_sync_core::Secret;
use clerk_sync_ingest::{Publisher, UnverifiedWebhook, Verifier};
use rand::rngs::StdRng;
use rand::SeedableRng;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::ServiceExt;

#[path = "common/bench_env.rs"]
mod bench_env;
#[path = "common/load.rs"]
mod load;
#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SECRET: &str = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";
const WARM_UP: usize = 500;
const MEASURED: usize = 5_000;

/// Allocations and bytes allocated per request, over `requests` sent one after another.
async fn per_request(router: &Router, requests: Vec<Request<Body>>) -> Result<(f64, f64)> {
    let n = requests.len() as f64;
    let region = Region::new(GLOBAL);
    for request in requests {
        let response = router.clone().oneshot(request).await?;
        ensure!(response.status().is_success(), "{}", response.status());
        axum::body::to_bytes(response.into_body(), 1 << 16).await?;
    }
    let change = region.change();
    Ok((
        change.allocations as f64 / n,
        change.bytes_allocated as f64 / n,
    ))
}

/// Allocations and bytes per webhook of each step of the handler, called directly: svix's
/// verification, routing (the record key), and the publish (librdkafka's delivery future).
async fn per_step(
    env: &bench_env::BenchEnv,
    verifier: &Verifier,
    publisher: &Publisher,
    signed: &[(axum::http::HeaderMap, Bytes)],
) -> Result<[(f64, f64); 3]> {
    let mut totals = [(0usize, 0usize); 3];
    let mut count = |step: usize, region: Region<'_, System>| {
        let change = region.change();
        totals[step].0 += change.allocations;
        totals[step].1 += change.bytes_allocated;
    };
    for (headers, body) in signed {
        let unverified = UnverifiedWebhook::new(headers.clone(), body.clone());
        let region = Region::new(GLOBAL);
        let webhook = unverified
            .verify(verifier)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        count(0, region);
        let region = Region::new(GLOBAL);
        let routed = clerk_sync_core::route_body(webhook.body())?;
        count(1, region);
        let Some(topic) = env.topics.for_stream(routed.route.stream) else {
            continue;
        };
        let key = routed.route.key.as_deref();
        let region = Region::new(GLOBAL);
        publisher
            .publish(&webhook, &routed.event_type, topic, key)
            .await?;
        count(2, region);
    }
    let n = signed.len() as f64;
    Ok(totals.map(|(a, b)| (a as f64 / n, b as f64 / n)))
}

fn requests(signed: &[(axum::http::HeaderMap, Bytes)]) -> Result<Vec<Request<Body>>> {
    signed
        .iter()
        .map(|(headers, body)| {
            let mut request = Request::post("/webhooks/clerk").body(Body::from(body.clone()))?;
            *request.headers_mut() = headers.clone();
            Ok(request)
        })
        .collect()
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let env = bench_env::BenchEnv::from_env(6).await?;
        let w = workload::workload(WARM_UP + MEASURED, &mut StdRng::seed_from_u64(42));
        let signed = load::signed_requests(&w, SECRET);
        let body_bytes = signed[WARM_UP..]
            .iter()
            .map(|(_, b)| b.len())
            .sum::<usize>() as f64
            / MEASURED as f64;
        let deadline = Duration::from_secs(10);
        let verifier = Arc::new(Verifier::new(
            &[SECRET.parse::<Secret>()?],
            Duration::from_secs(300),
        )?);
        let publisher = Publisher::new(&env.brokers, &env.options, deadline)?;
        // Built as the binary builds it: its own Kafka publisher, called without the trait.
        let ingest = clerk_sync_ingest::Ingest::build(clerk_sync_ingest::IngestConfig {
            secrets: vec![SECRET.parse::<Secret>()?],
            tolerance: Duration::from_secs(300),
            brokers: env.brokers.clone(),
            kafka_options: clerk_sync_kafka::options::KafkaOptions::new(env.options.clone()),
            publish_deadline: deadline,
            topics: env.topics.clone(),
            body_limit: 256 * 1024,
            max_in_flight: 1024,
            max_in_flight_per_peer: 1024,
            request_timeout: deadline,
            max_connections: 4096,
            memory_limit: None,
        })?;
        ingest.set_broker_ready(true);
        let ingest = ingest.router();
        let ceiling = Router::new().route(
            "/webhooks/clerk",
            post(|_body: Bytes| async { Json(serde_json::json!({"status": "accepted"})) }),
        );
        for router in [&ceiling, &ingest] {
            per_request(router, requests(&signed[..WARM_UP])?).await?;
        }
        let (ceiling_n, ceiling_b) = per_request(&ceiling, requests(&signed[WARM_UP..])?).await?;
        let (ingest_n, ingest_b) = per_request(&ingest, requests(&signed[WARM_UP..])?).await?;
        let steps = per_step(&env, &verifier, &publisher, &signed[WARM_UP..]).await?;
        println!("ingest allocations per webhook ({MEASURED} signed webhooks, one at a time, straight to the router; mean body {body_bytes:.0} bytes)");
        println!("  router answering at once (the HTTP stack's share):  {ceiling_n:>6.1} allocations  {ceiling_b:>8.0} bytes");
        println!("  clerk-sync ingest (verify, route, produce, answer): {ingest_n:>6.1} allocations  {ingest_b:>8.0} bytes");
        println!(
            "  beyond the HTTP stack:                             {:>6.1} allocations  {:>8.0} bytes ({:.1}× the body)",
            ingest_n - ceiling_n,
            ingest_b - ceiling_b,
            (ingest_b - ceiling_b) / body_bytes
        );
        for ((n, b), step) in steps.iter().zip([
            "verification (the svix crate; copies the body to sign it)",
            "routing (the record key)",
            "publish (the record, librdkafka's delivery future)",
        ]) {
            println!("    of which {step}: {n:.1} allocations, {b:.0} bytes");
        }
        Ok(())
    })
}
