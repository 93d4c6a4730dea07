use std::time::{SystemTime, UNIX_EPOCH};

use svix::webhooks::Webhook;

/// The fixtures' signing secret (fixtures/signed-headers.json).
pub const TEST_SECRET: &str = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";

/// The project's record key in the tests (RECORD_SIGNING_KEY): 32 bytes, base64.
pub const TEST_RECORD_KEY: &str = "Y2xlcmstc3luYy10ZXN0LXJlY29yZC1rZXktMzItYnl0ZXMh";

/// Svix's signature of a record's body under `secret`, with the timestamp it signs.
pub fn svix_signature(secret: &str, svix_id: &str, body: &[u8]) -> Option<(String, String)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let signature = Webhook::new(secret).ok()?.sign(svix_id, now, body).ok()?;
    Some((now.to_string(), signature))
}

/// A fixture file's exact bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A request signed now by the official Svix library, as Svix would send it.
pub fn signed_post(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    svix_id: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let (now, signature) =
        svix_signature(secret, svix_id, body).expect("signing with a valid secret");
    client
        .post(url)
        .header("svix-id", svix_id)
        .header("svix-timestamp", now)
        .header("svix-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
}

/// What the worker believes in the tests: the test secret and the test record key.
pub fn trust() -> std::sync::Arc<clerk_sync_worker::Trust> {
    use clerk_sync_core::Secret;
    let provenance = clerk_sync_kafka::provenance::Provenance::new(
        &[Secret::new(TEST_SECRET)],
        &[Secret::new(TEST_RECORD_KEY)],
    )
    .expect("the test secret and key");
    std::sync::Arc::new(clerk_sync_worker::Trust {
        provenance,
        max_clock_skew: std::time::Duration::from_secs(300),
    })
}
