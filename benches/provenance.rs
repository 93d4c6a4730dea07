//! What checking a record's provenance costs the worker: `decode_record` over the workload's
//! records as ingest writes them (Svix headers and the exact body), with the signature checked
//! against one secret and against two (a rotation), beside decoding alone. One thread, no broker
//! or database: the figure to put beside the worker's CPU per applied event at backlog
//! (BENCHMARKS.md, "Memory and CPU"). Prints figures; asserts nothing.
#![allow(dead_code)] // the shared bench modules carry what the other benchmarks use

use std::time::{Duration, Instant};

use anyhow::Result;
use clerk_sync_core::{ClerkEvent, EventId, Secret};
use clerk_sync_kafka::provenance::Provenance;
use clerk_sync_worker::{decode_record, Trust};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::Message;
use svix::webhooks::Webhook;

#[path = "common/workload.rs"]
mod workload;

const SECRET: &str = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";
const RETIRED: &str = "whsec_dGhlLWVuZHBvaW50cy1vbGQtc2VjcmV0IQ==";
const RECORDS: usize = 100_000;
const ROUNDS: usize = 5;

fn messages(w: &workload::Workload) -> Result<Vec<OwnedMessage>> {
    let webhook = Webhook::new(SECRET)?;
    let now = 1_765_000_000;
    w.delivered()
        .enumerate()
        .map(|(i, raw)| {
            let signature = webhook.sign(&raw.id, now, raw.body.as_bytes())?;
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "svix-id",
                    value: Some(raw.id.as_str()),
                })
                .insert(Header {
                    key: "clerk-event-type",
                    value: Some("user.updated"),
                })
                .insert(Header {
                    key: "svix-timestamp",
                    value: Some(&now.to_string()),
                })
                .insert(Header {
                    key: "svix-signature",
                    value: Some(&signature),
                });
            Ok(OwnedMessage::new(
                Some(raw.body.clone().into_bytes()),
                None,
                "clerk.users".to_owned(),
                Timestamp::CreateTime(0),
                0,
                i as i64,
                Some(headers),
            ))
        })
        .collect()
}

/// The fastest of `ROUNDS` passes over `messages`, per record.
fn per_record(messages: &[OwnedMessage], mut each: impl FnMut(&OwnedMessage) -> bool) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let ok = messages.iter().filter(|m| each(m)).count();
        assert_eq!(ok, messages.len(), "every record believed and decoded");
        best = best.min(started.elapsed() / messages.len() as u32);
    }
    best
}

fn trust(secrets: &[&str]) -> Result<Trust> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Ok(Trust {
        provenance: Provenance::new(&secrets, &[])?,
        max_clock_skew: Duration::from_secs(300),
    })
}

fn main() -> Result<()> {
    let w = workload::workload(RECORDS, &mut StdRng::seed_from_u64(42));
    let messages = messages(&w)?;
    let mean_body = messages
        .iter()
        .map(|m| m.payload().map_or(0, <[u8]>::len))
        .sum::<usize>()
        / messages.len();
    let now = i64::MAX / 2;
    let decode_only = per_record(&messages, |m| {
        let id = m
            .headers()
            .and_then(|h| h.get(0).value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default();
        EventId::parse(id.to_owned())
            .and_then(|id| ClerkEvent::decode(id, m.payload().unwrap_or_default()))
            .is_ok()
    });
    let one = trust(&[SECRET])?;
    let verify_only = per_record(&messages, |m| {
        one.provenance
            .verify(m.headers(), m.payload().unwrap_or_default())
            .is_ok()
    });
    let verified = per_record(&messages, |m| decode_record(m, &one, now).decoded.is_ok());
    // During a rotation the record's own secret may be the second one tried.
    let two = trust(&[RETIRED, SECRET])?;
    let rotation = per_record(&messages, |m| decode_record(m, &two, now).decoded.is_ok());
    println!(
        "provenance: {} records, mean body {mean_body} B, fastest of {ROUNDS} passes, one thread",
        messages.len()
    );
    println!(
        "  decode only:                    {:>6.2} µs per record",
        decode_only.as_secs_f64() * 1e6
    );
    println!(
        "  verify only, one secret:        {:>6.2} µs per record",
        verify_only.as_secs_f64() * 1e6
    );
    println!(
        "  verify + decode, one secret:    {:>6.2} µs per record",
        verified.as_secs_f64() * 1e6
    );
    println!(
        "  verify + decode, second of two: {:>6.2} µs per record",
        rotation.as_secs_f64() * 1e6
    );
    Ok(())
}
