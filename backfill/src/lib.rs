//! Backfill from Clerk's Backend API: every user, organization and membership, published to the
//! same topics with the same keys as live webhooks, as events the worker applies under the same
//! version rules. A backfill racing live webhooks never overwrites newer data, and a re-run is a
//! no-op in effect (each object version has a deterministic event id).
//!
//! With `--prune` it also measures the tables against the listing (`drift.rs`) and deletes what
//! Clerk deleted while no webhook arrived (`prune.rs`), through the same topics.

mod api;
mod drift;
mod error;
mod prune;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use clerk_sync_core::{record_header, route, Envelope, Secret, Topics};
pub use error::{Error, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{json, Value};

pub use api::check_api_url;
use api::ClerkApi;
use drift::DriftDb;
pub use drift::{Ids, TableDrift};
use prune::ListingFacts;
pub use prune::PruneConfig;

/// The three listings, in the order they are backfilled: (API path under `/v1/`, event type).
pub const RESOURCES: &[(&str, &str)] = &[
    ("organizations", "organization.updated"),
    ("users", "user.updated"),
    ("organization_memberships", "organizationMembership.updated"),
];

#[derive(Clone, Debug)]
pub struct BackfillConfig {
    pub api_url: String,
    pub secret_key: Secret,
    pub page_size: u32,
    /// Requests per second at most.
    pub rate: f64,
    pub topics: Topics,
    pub dry_run: bool,
    pub state_file: PathBuf,
    pub resume: bool,
    /// Measure the drift and delete what Clerk deleted (`--prune`).
    pub prune: Option<PruneConfig>,
    /// Signs every record published (the worker applies only signed records); `None` only for
    /// a dry run, which publishes nothing.
    pub signer: Option<clerk_sync_kafka::provenance::RecordSigner>,
}

/// Where an interrupted backfill resumes: the resource and offset of the next page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub resource: usize,
    pub offset: u64,
}

/// What a backfill did, for its report and `--json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSummary {
    pub dry_run: bool,
    /// Objects listed per resource, in [`RESOURCES`] order.
    pub listed: [u64; 3],
    /// What Clerk counts per resource, when it says (`total_count`, `/v1/users/count`).
    pub totals: [Option<u64>; 3],
    /// The resource being listed (3 when done) and pages read so far.
    #[serde(skip)]
    pub resource: usize,
    pub pages: u64,
    /// Object versions published (none in a dry run).
    pub published: u64,
    /// Deletions published by `--prune`.
    pub pruned: u64,
    pub requests: u64,
    pub rate_limited: u64,
    /// The tables measured against the listing (`--prune` only), in [`RESOURCES`] order.
    pub drift: Option<Vec<TableDrift>>,
    /// Why nothing was pruned although rows were unlisted (`--prune` only).
    pub prune_refused: Option<String>,
}

impl BackfillSummary {
    /// Rows missing, stale or deleted in Clerk (`--prune` only).
    pub fn drift_rows(&self) -> u64 {
        self.drift.iter().flatten().map(TableDrift::rows).sum()
    }
}

/// The event the worker would have received for this object version.
pub fn synthetic_event(event_type: &str, object: &Value) -> Result<(String, Vec<u8>)> {
    let id = object["id"]
        .as_str()
        .ok_or_else(|| Error::Api("a listed object without id".to_owned()))?;
    let updated_at = object["updated_at"]
        .as_i64()
        .ok_or_else(|| Error::Api(format!("{id}: a listed object without updated_at")))?;
    let body = json!({
        "type": event_type,
        "object": "event",
        "timestamp": updated_at,
        "data": object,
    });
    Ok((
        format!("backfill_{id}_{updated_at}"),
        serde_json::to_vec(&body)?,
    ))
}

fn save(path: &PathBuf, progress: &Progress) -> Result<()> {
    std::fs::write(path, serde_json::to_vec(progress)?).map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// What Clerk counts of a resource before it is listed: users have an endpoint for it, the
/// other listings say it on every page.
async fn total_users(api: &mut ClerkApi) -> Option<u64> {
    match api.get("/v1/users/count", &[]).await {
        Ok(body) => body.and_then(|b| b["total_count"].as_u64()),
        Err(e) => {
            tracing::warn!(
                error = %clerk_sync_core::error_chain(&e),
                "cannot read the user count; progress shows none"
            );
            None
        }
    }
}

/// Lists everything and publishes it; `on_page(summary)` after each page. With `--prune`,
/// measures the drift and publishes the deletions it confirms.
pub async fn backfill(
    config: BackfillConfig,
    producer: &FutureProducer,
    mut on_page: impl FnMut(&BackfillSummary),
) -> Result<BackfillSummary> {
    let mut progress = if config.resume {
        std::fs::read(&config.state_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    } else {
        Progress::default()
    };
    let mut api = ClerkApi::new(&config.api_url, config.secret_key.clone(), config.rate)?;
    // Opened before the first page: what changes here after this moment is left alone.
    let mut db = match &config.prune {
        Some(prune) => Some(DriftDb::open(&prune.database_url).await?),
        None => None,
    };
    let mut summary = BackfillSummary {
        dry_run: config.dry_run,
        ..BackfillSummary::default()
    };
    while progress.resource < RESOURCES.len() {
        progress = next_page(
            &config,
            producer,
            &mut api,
            db.as_mut(),
            progress,
            &mut summary,
        )
        .await?;
        if !config.dry_run {
            save(&config.state_file, &progress)?;
        }
        on_page(&summary);
    }
    summary.resource = RESOURCES.len();
    if let (Some(db), Some(prune)) = (&mut db, &config.prune) {
        prune_drift(db, &mut api, prune, &config, producer, &mut summary).await?;
    }
    summary.requests = api.requests;
    summary.rate_limited = api.rate_limited;
    Ok(summary)
}

/// Lists the page at `progress`, keeps it for the drift measure, publishes it (unless a dry
/// run); returns where the next page is.
async fn next_page(
    config: &BackfillConfig,
    producer: &FutureProducer,
    api: &mut ClerkApi,
    db: Option<&mut DriftDb>,
    progress: Progress,
    summary: &mut BackfillSummary,
) -> Result<Progress> {
    let (resource, event_type) = RESOURCES[progress.resource];
    summary.resource = progress.resource;
    if resource == "users" && summary.totals[1].is_none() {
        summary.totals[1] = total_users(api).await;
    }
    let page = api
        .page(
            &format!("/v1/{resource}"),
            config.page_size,
            progress.offset,
        )
        .await?;
    summary.pages += 1;
    summary.listed[progress.resource] += page.items.len() as u64;
    if page.total_count.is_some() {
        summary.totals[progress.resource] = page.total_count;
    }
    if let Some(db) = db {
        db.add(progress.resource, &page.items).await?;
    }
    if !config.dry_run {
        for object in &page.items {
            let (event_id, body) = synthetic_event(event_type, object)?;
            publish(producer, config, &event_id, event_type, &body).await?;
            summary.published += 1;
        }
    }
    summary.requests = api.requests;
    summary.rate_limited = api.rate_limited;
    let full_page = page.items.len() as u64 >= u64::from(config.page_size);
    Ok(if full_page {
        Progress {
            resource: progress.resource,
            offset: progress.offset + page.items.len() as u64,
        }
    } else {
        Progress {
            resource: progress.resource + 1,
            offset: 0,
        }
    })
}

/// Measures the drift, confirms what Clerk deleted and (unless a dry run) publishes the
/// deletions, each dated when the listing began so that the version rules decide.
async fn prune_drift(
    db: &mut DriftDb,
    api: &mut ClerkApi,
    prune: &PruneConfig,
    config: &BackfillConfig,
    producer: &FutureProducer,
    summary: &mut BackfillSummary,
) -> Result<()> {
    let mut drift = db.measure().await?;
    let facts = ListingFacts {
        listed: summary.listed,
        totals: summary.totals,
    };
    let plan = prune::confirm(db, api, &facts, &mut drift, prune).await?;
    summary.prune_refused = plan.refused.clone();
    if !config.dry_run && plan.refused.is_none() {
        for (event_id, event_type, body) in plan.events(db, db.started_ms).await? {
            publish(producer, config, &event_id, event_type, &body).await?;
            summary.pruned += 1;
        }
        for table in &drift {
            for id in &table.deleted.ids {
                // Ids only: never what the row held.
                tracing::info!(table = table.table, clerk_id = %id, "pruned: deleted in Clerk");
            }
        }
    }
    summary.drift = Some(drift);
    Ok(())
}

/// Publishes one object as a Clerk event, signed with the project's key.
async fn publish(
    producer: &FutureProducer,
    config: &BackfillConfig,
    event_id: &str,
    event_type: &str,
    body: &[u8],
) -> Result<()> {
    let envelope = Envelope::parse(body)?;
    let route = route(&envelope)?;
    let Some(topic) = config.topics.for_stream(route.stream) else {
        return Ok(());
    };
    let Some(signer) = &config.signer else {
        return Err(Error::Setting(
            "RECORD_SIGNING_KEY is not set: expected the key that signs what backfill publishes"
                .to_owned(),
        ));
    };
    let signature = signer.sign(event_id, event_type, body);
    let headers = clerk_sync_kafka::event_headers(
        event_id,
        event_type,
        [
            (record_header::ORIGIN, "backfill"),
            (record_header::OWN_SIGNATURE, signature.as_str()),
        ],
    );
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .payload(body)
        .headers(headers);
    if let Some(key) = route.key.as_deref() {
        record = record.key(key);
    }
    producer
        .send(record, Timeout::After(Duration::from_secs(30)))
        .await
        .map_err(|(source, _)| Error::Publish {
            topic: topic.to_owned(),
            source: clerk_sync_kafka::delivery_error(producer, source),
        })?;
    Ok(())
}
