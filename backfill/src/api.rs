//! Clerk's Backend API as backfill reads it: one client that keeps the request rate, waits out
//! 429s, retries transient failures and refuses what retrying cannot fix.

use std::time::{Duration, Instant};

use crate::{Error, Result};
use clerk_sync_core::{error_chain, Secret};
use serde_json::Value;

/// Retries of a transient failure (connection error, 5xx) before giving up.
const MAX_FAILURES: u32 = 8;

pub struct ClerkApi {
    http: reqwest::Client,
    base: String,
    secret_key: Secret,
    /// Requests per second at most.
    rate: f64,
    last_request: Option<Instant>,
    /// Requests sent and 429s waited out, for the summary.
    pub requests: u64,
    pub rate_limited: u64,
}

impl ClerkApi {
    pub fn new(api_url: &str, secret_key: Secret, rate: f64) -> Result<Self> {
        Ok(ClerkApi {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|source| Error::Http {
                    what: "building the HTTP client for CLERK_API_URL".to_owned(),
                    source,
                })?,
            base: api_url.trim_end_matches('/').to_owned(),
            secret_key,
            rate,
            last_request: None,
            requests: 0,
            rate_limited: 0,
        })
    }

    /// `GET {base}{path}`: the JSON answer, or `None` for a 404.
    pub async fn get(&mut self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let mut failures = 0u32;
        loop {
            self.keep_rate().await;
            self.requests += 1;
            let response = self
                .http
                .get(&url)
                .bearer_auth(self.secret_key.expose())
                .query(query)
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                // Retrying cannot make an untrusted certificate trusted.
                Err(e) if is_certificate_error(&e) => return Err(Error::Api(format!(
                    "GET {url}: the server's TLS certificate is not trusted (trust a private CA with SSL_CERT_FILE or SSL_CERT_DIR): {}",
                    error_chain(&e)
                ))),
                Err(e) if failures < MAX_FAILURES => {
                    failures += 1;
                    tracing::warn!(error = %error_chain(&e), path, "Clerk API request failed; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
                Err(e) => return Err(Error::Api(format!("GET {url}: {}", error_chain(&e)))),
            };
            let status = response.status();
            if status.as_u16() == 429 {
                self.rate_limited += 1;
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(10);
                tracing::warn!(path, wait_secs = wait, "rate limited by Clerk; waiting");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            if status.is_server_error() && failures < MAX_FAILURES {
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
            match status.as_u16() {
                401 | 403 => return Err(Error::Setting(format!("CLERK_SECRET_KEY: Clerk answered {status} for {url}: expected an instance secret key (sk_…)"))),
                404 => return Ok(None),
                _ if !status.is_success() => {
                    return Err(Error::Api(format!("GET {url} answered {status}")))
                }
                _ => {}
            }
            let body = response.json().await.map_err(|source| Error::Http {
                what: format!("GET {url}: not JSON"),
                source,
            })?;
            return Ok(Some(body));
        }
    }

    /// One page of a listing, oldest first, with the listing's `total_count` when it gives one.
    pub async fn page(&mut self, path: &str, limit: u32, offset: u64) -> Result<Page> {
        let query = [
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            // Offset paging drifts while objects are created: oldest first, so new ones land
            // on later pages. All three instance listings take `±created_at` (Clerk's Backend
            // API reference: users, organizations, instance memberships).
            ("order_by", "+created_at".to_owned()),
        ];
        let Some(body) = self.get(path, &query).await? else {
            return Err(Error::Api(format!(
                "GET {}{path} answered 404 Not Found",
                self.base
            )));
        };
        Page::read(body).map_err(|what| Error::Api(format!("GET {}{path}: {what}", self.base)))
    }

    async fn keep_rate(&mut self) {
        let min_gap = Duration::from_secs_f64(1.0 / self.rate.max(0.01));
        if let Some(last) = self.last_request {
            let since = last.elapsed();
            if since < min_gap {
                tokio::time::sleep(min_gap - since).await;
            }
        }
        self.last_request = Some(Instant::now());
    }
}

/// A listing's page: `/v1/users` answers a bare array, the others `{"data": [...],
/// "total_count": n}`.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Value>,
    pub total_count: Option<u64>,
}

impl Page {
    fn read(body: Value) -> Result<Page, &'static str> {
        match body {
            Value::Array(items) => Ok(Page {
                items,
                total_count: None,
            }),
            Value::Object(mut map) => {
                let total_count = map.get("total_count").and_then(Value::as_u64);
                match map.remove("data") {
                    Some(Value::Array(items)) => Ok(Page { items, total_count }),
                    _ => Err("no `data` array in the answer"),
                }
            }
            _ => Err("unexpected answer"),
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(failures))
}

/// The Clerk API base URL, refused unless it is `https://`, or `http://` to a loopback address
/// (a local stand-in): anywhere else the secret key would travel in clear.
pub fn check_api_url(raw: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw).map_err(|e| {
        Error::Setting(format!(
            "CLERK_API_URL: expected an https:// URL, got `{raw}` ({e})"
        ))
    })?;
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(Error::Setting(format!("CLERK_API_URL: {raw} is plain http: the secret key would travel in clear; use https:// (http:// is allowed to a loopback address only)"))),
        other => Err(Error::Setting(format!("CLERK_API_URL: expected an https:// URL, got the scheme `{other}`"))),
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
