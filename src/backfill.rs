//! Backfill from Clerk's Backend API: every user, organization and membership, published to the
//! same topics with the same keys as live webhooks, as events the worker applies under the same
//! version rules. A backfill racing live webhooks never overwrites newer data, and a re-run is a
//! no-op in effect (each object version has a deterministic event id).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clerk_sync_core::{error_chain, record_header, route, Envelope, Secret, Topics};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{json, Value};

/// The three listings, in the order they are backfilled.
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
}

/// Where an interrupted backfill resumes: the resource and offset of the next page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub resource: usize,
    pub offset: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillSummary {
    /// Objects listed per resource, in [`RESOURCES`] order.
    pub listed: [u64; 3],
    pub published: u64,
    pub requests: u64,
    pub rate_limited: u64,
}

struct Client {
    http: reqwest::Client,
    config: BackfillConfig,
    last_request: Option<Instant>,
}

impl Client {
    /// One page, honouring the rate limit, 429 `Retry-After` and transient 5xx.
    async fn page(
        &mut self,
        resource: &str,
        offset: u64,
        summary: &mut BackfillSummary,
    ) -> Result<Vec<Value>> {
        let url = format!(
            "{}/v1/{resource}",
            self.config.api_url.trim_end_matches('/')
        );
        let mut failures = 0u32;
        loop {
            let min_gap = Duration::from_secs_f64(1.0 / self.config.rate.max(0.01));
            if let Some(last) = self.last_request {
                let since = last.elapsed();
                if since < min_gap {
                    tokio::time::sleep(min_gap - since).await;
                }
            }
            self.last_request = Some(Instant::now());
            summary.requests += 1;
            let response = self
                .http
                .get(&url)
                .bearer_auth(self.config.secret_key.expose())
                .query(&[
                    ("limit", self.config.page_size.to_string()),
                    ("offset", offset.to_string()),
                    // Offset paging drifts while objects are created: oldest first, so new
                    // ones land on later pages. All three listings take `±created_at`
                    // (Clerk's Backend API reference: users, organizations, instance memberships).
                    ("order_by", "+created_at".to_owned()),
                ])
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                // Retrying cannot make an untrusted certificate trusted.
                Err(e) if is_certificate_error(&e) => bail!(
                    "GET {url}: the server's TLS certificate is not trusted (trust a private CA with SSL_CERT_FILE or SSL_CERT_DIR): {}",
                    error_chain(&e)
                ),
                Err(e) if failures < 8 => {
                    failures += 1;
                    tracing::warn!(error = %error_chain(&e), resource, "Clerk API request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(failures))).await;
                    continue;
                }
                Err(e) => bail!("GET {url}: {}", error_chain(&e)),
            };
            let status = response.status();
            if status.as_u16() == 429 {
                summary.rate_limited += 1;
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(10);
                tracing::warn!(resource, wait_secs = wait, "rate limited by Clerk; waiting");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            if status.is_server_error() && failures < 8 {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(failures))).await;
                continue;
            }
            if status.as_u16() == 401 || status.as_u16() == 403 {
                bail!("CLERK_SECRET_KEY: Clerk answered {status} for {url}: expected an instance secret key (sk_…)");
            }
            if !status.is_success() {
                bail!("GET {url} answered {status}");
            }
            let body: Value = response
                .json()
                .await
                .with_context(|| format!("GET {url}: not JSON"))?;
            // /v1/users answers an array; the other listings wrap it in {"data": [...]}.
            let items = match body {
                Value::Array(items) => items,
                Value::Object(mut map) => match map.remove("data") {
                    Some(Value::Array(items)) => items,
                    _ => bail!("GET {url}: no `data` array in the answer"),
                },
                _ => bail!("GET {url}: unexpected answer"),
            };
            return Ok(items);
        }
    }
}

/// The Clerk API base URL, refused unless it is `https://`, or `http://` to a loopback address
/// (a local stand-in): anywhere else the secret key would travel in clear.
pub fn check_api_url(raw: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw)
        .with_context(|| format!("CLERK_API_URL: expected an https:// URL, got `{raw}`"))?;
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => bail!("CLERK_API_URL: {raw} is plain http: the secret key would travel in clear; use https:// (http:// is allowed to a loopback address only)"),
        other => bail!("CLERK_API_URL: expected an https:// URL, got the scheme `{other}`"),
    }
}

/// A TLS handshake that failed on the server's certificate (unknown CA, expired, wrong name).
fn is_certificate_error(e: &reqwest::Error) -> bool {
    if error_chain(e).contains("certificate verify failed") {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if cause.downcast_ref::<native_tls::Error>().is_some() {
            let text = cause.to_string();
            return text.contains("certificate") || text.contains("verify");
        }
        source = cause.source();
    }
    false
}

/// The event the worker would have received for this object version.
pub fn synthetic_event(event_type: &str, object: &Value) -> Result<(String, Vec<u8>)> {
    let id = object["id"].as_str().context("object without id")?;
    let updated_at = object["updated_at"]
        .as_i64()
        .context("object without updated_at")?;
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
    std::fs::write(path, serde_json::to_vec(progress)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Lists everything and publishes it; `on_page(summary)` after each page.
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
    let state_file = config.state_file.clone();
    let mut client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        config,
        last_request: None,
    };
    let mut summary = BackfillSummary::default();
    while progress.resource < RESOURCES.len() {
        let (resource, event_type) = RESOURCES[progress.resource];
        let items = client.page(resource, progress.offset, &mut summary).await?;
        summary.listed[progress.resource] += items.len() as u64;
        if !client.config.dry_run {
            for object in &items {
                publish(producer, &client.config.topics, event_type, object).await?;
                summary.published += 1;
            }
        }
        let full_page = items.len() as u64 >= u64::from(client.config.page_size);
        progress = if full_page {
            Progress {
                resource: progress.resource,
                offset: progress.offset + items.len() as u64,
            }
        } else {
            Progress {
                resource: progress.resource + 1,
                offset: 0,
            }
        };
        if !client.config.dry_run {
            save(&state_file, &progress)?;
        }
        on_page(&summary);
    }
    Ok(summary)
}

async fn publish(
    producer: &FutureProducer,
    topics: &Topics,
    event_type: &str,
    object: &Value,
) -> Result<()> {
    let (event_id, body) = synthetic_event(event_type, object)?;
    let envelope = Envelope::parse(&body)?;
    let route = route(&envelope)?;
    let Some(topic) = topics.for_stream(route.stream) else {
        return Ok(());
    };
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: record_header::EVENT_ID,
            value: Some(event_id.as_str()),
        })
        .insert(Header {
            key: record_header::EVENT_TYPE,
            value: Some(event_type),
        })
        .insert(Header {
            key: record_header::CONTENT_TYPE,
            value: Some("application/json"),
        })
        .insert(Header {
            key: record_header::ORIGIN,
            value: Some("backfill"),
        });
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .payload(&body)
        .headers(headers);
    if let Some(key) = route.key.as_deref() {
        record = record.key(key);
    }
    producer
        .send(record, Timeout::After(Duration::from_secs(30)))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("publishing to {topic}"))?;
    Ok(())
}
