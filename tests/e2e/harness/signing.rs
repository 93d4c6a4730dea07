use std::time::{SystemTime, UNIX_EPOCH};

use svix::webhooks::Webhook;

/// The fixtures' signing secret (fixtures/signed-headers.json).
pub const TEST_SECRET: &str = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";

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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let signature = Webhook::new(secret)
        .and_then(|w| w.sign(svix_id, now, body))
        .expect("signing with a valid secret");
    client
        .post(url)
        .header("svix-id", svix_id)
        .header("svix-timestamp", now.to_string())
        .header("svix-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
}
