use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use bytes::Bytes;
use clerk_sync_core::Secret;
use svix::webhooks::{Webhook, WebhookError};

use crate::{ApiError, Error, Result};

/// Checks Svix signatures against every configured secret (rotation) and the timestamp window.
pub struct Verifier {
    webhooks: Vec<Webhook>,
    tolerance: Duration,
}

impl Verifier {
    pub fn new(secrets: &[Secret], tolerance: Duration) -> Result<Self> {
        if secrets.is_empty() {
            return Err(Error::NoSecret);
        }
        let webhooks = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let webhook = Webhook::new(s.expose()).map_err(|source| Error::InvalidSecret {
                    index: i + 1,
                    source,
                })?;
                let bytes = key_bytes(s.expose());
                if bytes < crate::error::MIN_SECRET_BYTES {
                    return Err(Error::WeakSecret {
                        index: i + 1,
                        bytes,
                    });
                }
                Ok(webhook)
            })
            .collect::<Result<_>>()?;
        Ok(Verifier {
            webhooks,
            tolerance,
        })
    }
}

/// A request as received: nothing about it may be trusted or published yet.
pub struct UnverifiedWebhook {
    headers: HeaderMap,
    body: Bytes,
}

/// A request whose signature and timestamp were checked. Only [`UnverifiedWebhook::verify`]
/// makes one, so nothing unverified can reach the publisher.
#[derive(Clone)]
pub struct VerifiedWebhook {
    // The request's own headers: the id and timestamp are read where they are (no copies).
    headers: HeaderMap,
    body: Bytes,
}

/// Names the message, not every header the request carried (a proxy's among them).
impl std::fmt::Debug for VerifiedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("id", &self.id())
            .field("timestamp", &self.timestamp())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl VerifiedWebhook {
    /// The Svix message id: the event's identity, stable across retries.
    pub fn id(&self) -> &str {
        header(&self.headers, "svix-id", "webhook-id").unwrap_or_default()
    }

    /// `svix-timestamp` as sent (unix seconds).
    pub fn timestamp(&self) -> &str {
        header(&self.headers, "svix-timestamp", "webhook-timestamp").unwrap_or_default()
    }

    /// `svix-signature` as sent: carried into the record, so the worker can check it again.
    pub fn signature(&self) -> &str {
        header(&self.headers, "svix-signature", "webhook-signature").unwrap_or_default()
    }

    /// The exact bytes that were verified.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// The length of a secret's key: the base64 after `whsec_`, as the svix crate decodes it.
fn key_bytes(secret: &str) -> usize {
    use base64::Engine;
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_or(0, |k| k.len())
}

fn header<'a>(headers: &'a HeaderMap, svix: &str, standard: &str) -> Option<&'a str> {
    headers
        .get(svix)
        .or_else(|| headers.get(standard))
        .and_then(|v| v.to_str().ok())
}

/// Signatures a request may carry: one per secret Svix signs with (two during a rotation),
/// with room to spare. More is no delivery of Svix's.
const MAX_SIGNATURES: usize = 8;

/// Longest `svix-id` taken (Svix's are `msg_` and 27 characters).
const MAX_ID_LEN: usize = 256;

impl Verifier {
    /// What can be told from a request's head alone, before its body is read or an in-flight
    /// slot is taken: the Svix headers are each there once (as `svix-*` or `webhook-*`, which
    /// agree when both are sent), well-formed, with at most 8 signatures, and
    /// the timestamp (unix seconds, digits only) inside the window. A request that fails this
    /// costs no more than its head.
    pub fn precheck(&self, headers: &HeaderMap, now: SystemTime) -> Result<(), ApiError> {
        let id = single(headers, "svix-id", "webhook-id")?;
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::MissingSignature("svix-id"));
        }
        let timestamp = single(headers, "svix-timestamp", "webhook-timestamp")?;
        let well_formed = !timestamp.is_empty()
            && timestamp.len() <= 12
            && timestamp.bytes().all(|b| b.is_ascii_digit())
            && !(timestamp.len() > 1 && timestamp.starts_with('0'));
        let sent: u64 = match timestamp.parse() {
            Ok(sent) if well_formed => sent,
            _ => return Err(ApiError::MissingSignature("svix-timestamp")),
        };
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now.abs_diff(sent) > self.tolerance.as_secs() {
            return Err(ApiError::StaleTimestamp);
        }
        let signatures = single(headers, "svix-signature", "webhook-signature")?;
        let count = signatures.split_ascii_whitespace().count();
        if count == 0 || count > MAX_SIGNATURES {
            return Err(ApiError::MissingSignature("svix-signature"));
        }
        Ok(())
    }
}

/// The one value of a Svix header, sent under its `svix-` or its `webhook-` name (the same value
/// when under both). Repeated or disagreeing lines make the request ambiguous: refused.
fn single<'a>(
    headers: &'a HeaderMap,
    svix: &'static str,
    standard: &str,
) -> Result<&'a str, ApiError> {
    let mut values = headers
        .get_all(svix)
        .iter()
        .chain(headers.get_all(standard).iter());
    let first = values.next().ok_or(ApiError::MissingSignature(svix))?;
    if values.any(|other| other != first)
        || headers.get_all(svix).iter().count() > 1
        || headers.get_all(standard).iter().count() > 1
    {
        return Err(ApiError::MissingSignature(svix));
    }
    first.to_str().map_err(|_| ApiError::MissingSignature(svix))
}

impl UnverifiedWebhook {
    pub fn new(headers: HeaderMap, body: Bytes) -> Self {
        UnverifiedWebhook { headers, body }
    }

    pub fn verify(self, verifier: &Verifier) -> Result<VerifiedWebhook, ApiError> {
        self.verify_at(verifier, SystemTime::now())
    }

    /// `now` is a parameter so that tests can verify old fixtures with a fixed clock.
    pub fn verify_at(
        self,
        verifier: &Verifier,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, ApiError> {
        let mut first_error = None;
        let matched = verifier.webhooks.iter().any(|webhook| {
            match webhook.verify_ignoring_timestamp(&self.body, &self.headers) {
                Ok(()) => true,
                Err(e) => {
                    first_error.get_or_insert(e);
                    false
                }
            }
        });
        if !matched {
            return Err(match first_error {
                Some(WebhookError::MissingHeader(h) | WebhookError::InvalidHeader(h)) => {
                    ApiError::MissingSignature(header_name(h))
                }
                Some(WebhookError::InvalidTimestamp) => {
                    ApiError::MissingSignature("svix-timestamp")
                }
                _ => ApiError::BadSignature,
            });
        }
        // The svix crate's own window is fixed at five minutes; ours is configurable.
        let timestamp =
            header(&self.headers, "svix-timestamp", "webhook-timestamp").unwrap_or_default();
        let sent: u64 = timestamp
            .parse()
            .map_err(|_| ApiError::MissingSignature("svix-timestamp"))?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now.abs_diff(sent) > verifier.tolerance.as_secs() {
            return Err(ApiError::StaleTimestamp);
        }
        Ok(VerifiedWebhook {
            headers: self.headers,
            body: self.body,
        })
    }
}

fn header_name(which: &str) -> &'static str {
    match which {
        "id" => "svix-id",
        "timestamp" => "svix-timestamp",
        _ => "svix-signature",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn svix_vector() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "svix-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().expect("valid"),
        );
        headers.insert("svix-timestamp", "1614265330".parse().expect("valid"));
        headers.insert(
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .expect("valid"),
        );
        headers
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Verifier::new(&secrets, Duration::from_secs(300)).expect("valid secrets")
    }

    #[test]
    fn svix_published_test_vector_verifies() {
        let body = Bytes::from_static(br#"{"test": 2432232314}"#);
        let verified = UnverifiedWebhook::new(svix_vector(), body)
            .verify_at(&verifier(&[SVIX_SECRET]), at(1_614_265_330))
            .expect("verifies");
        assert_eq!(verified.id(), "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[test]
    fn any_of_several_secrets_verifies_during_rotation() {
        let body = Bytes::from_static(br#"{"test": 2432232314}"#);
        let other = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";
        UnverifiedWebhook::new(svix_vector(), body)
            .verify_at(&verifier(&[other, SVIX_SECRET]), at(1_614_265_330))
            .expect("second secret verifies");
    }

    #[test]
    fn a_flipped_body_byte_is_a_bad_signature() {
        let body = Bytes::from_static(br#"{"test": 2432232315}"#);
        let err = UnverifiedWebhook::new(svix_vector(), body)
            .verify_at(&verifier(&[SVIX_SECRET]), at(1_614_265_330))
            .expect_err("rejected");
        assert_eq!(err, ApiError::BadSignature);
    }

    #[test]
    fn a_timestamp_six_minutes_old_is_stale() {
        let body = Bytes::from_static(br#"{"test": 2432232314}"#);
        let err = UnverifiedWebhook::new(svix_vector(), body)
            .verify_at(&verifier(&[SVIX_SECRET]), at(1_614_265_330 + 360))
            .expect_err("rejected");
        assert_eq!(err, ApiError::StaleTimestamp);
    }

    #[test]
    fn standard_webhooks_header_names_are_accepted() {
        let mut headers = HeaderMap::new();
        for (name, value) in svix_vector().iter() {
            let standard = name.as_str().replace("svix-", "webhook-");
            headers.insert(
                axum::http::HeaderName::from_bytes(standard.as_bytes()).expect("valid"),
                value.clone(),
            );
        }
        let body = Bytes::from_static(br#"{"test": 2432232314}"#);
        UnverifiedWebhook::new(headers, body)
            .verify_at(&verifier(&[SVIX_SECRET]), at(1_614_265_330))
            .expect("verifies");
    }

    #[test]
    fn a_missing_signature_header_is_named() {
        let mut headers = svix_vector();
        headers.remove("svix-signature");
        let err = UnverifiedWebhook::new(headers, Bytes::from_static(b"{}"))
            .verify_at(&verifier(&[SVIX_SECRET]), at(1_614_265_330))
            .expect_err("rejected");
        assert_eq!(err, ApiError::MissingSignature("svix-signature"));
    }

    #[test]
    fn a_head_without_well_formed_svix_headers_is_refused_before_its_body_is_read() {
        let v = verifier(&[SVIX_SECRET]);
        let now = at(1_614_265_330);
        assert_eq!(v.precheck(&svix_vector(), now), Ok(()));
        let with = |name: &str, value: &str| {
            let mut h = svix_vector();
            h.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
            h
        };
        let ts = "svix-timestamp";
        for (headers, expected) in [
            (with(ts, "+1614265330"), ApiError::MissingSignature(ts)),
            (with(ts, "0001614265330"), ApiError::MissingSignature(ts)),
            (with(ts, "-1"), ApiError::MissingSignature(ts)),
            (
                with(ts, "99999999999999999999999"),
                ApiError::MissingSignature(ts),
            ),
            (with(ts, "1614265330000"), ApiError::MissingSignature(ts)),
            (with(ts, "1614264000"), ApiError::StaleTimestamp),
            (with("svix-id", ""), ApiError::MissingSignature("svix-id")),
            (
                with("webhook-id", "msg_other"),
                ApiError::MissingSignature("svix-id"),
            ),
            (
                with("svix-signature", &"v1,AAAA ".repeat(5_000)),
                ApiError::MissingSignature("svix-signature"),
            ),
        ] {
            assert_eq!(v.precheck(&headers, now), Err(expected));
        }
        let mut repeated = svix_vector();
        repeated.append("svix-id", "msg_second".parse().expect("value"));
        assert_eq!(
            v.precheck(&repeated, now),
            Err(ApiError::MissingSignature("svix-id"))
        );
        // The same message under both names is one message.
        assert_eq!(
            v.precheck(&with("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), now),
            Ok(())
        );
        assert_eq!(
            v.precheck(&HeaderMap::new(), now),
            Err(ApiError::MissingSignature("svix-id"))
        );
    }

    #[test]
    fn a_secret_of_fewer_than_16_bytes_of_key_fails_at_start_up_naming_its_place_in_the_list() {
        // "whsec_test" decodes to 3 bytes of key.
        let secrets = [Secret::new(SVIX_SECRET), Secret::new("whsec_dGVzdA==")];
        let err = Verifier::new(&secrets, Duration::from_secs(300));
        assert!(matches!(err, Err(Error::WeakSecret { index: 2, bytes: 4 })));
        let weak = Verifier::new(&[Secret::new("whsec_test")], Duration::from_secs(300));
        assert!(
            matches!(weak, Err(Error::WeakSecret { index: 1, bytes: 3 })),
            "{:?}",
            weak.err()
        );
    }

    #[test]
    fn an_invalid_secret_fails_at_start_up() {
        let err = Verifier::new(&[Secret::new("whsec_%%%")], Duration::from_secs(300));
        assert!(matches!(err, Err(Error::InvalidSecret { index: 1, .. })));
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    /// fixtures/signed-headers.json: the headers that sign each fixture file byte for byte.
    #[test]
    fn every_fixture_verifies_with_the_headers_svix_signed_it_with() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
        let signed: serde_json::Value = serde_json::from_slice(
            &std::fs::read(format!("{dir}/signed-headers.json")).expect("signed-headers.json"),
        )
        .expect("json");
        let secret = Secret::new(signed["secret"].as_str().expect("secret"));
        let verifier = Verifier::new(&[secret], Duration::from_secs(300)).expect("valid");
        let messages = signed["messages"].as_array().expect("messages");
        assert!(!messages.is_empty());
        for m in messages {
            let file = m["file"].as_str().expect("file");
            let body = std::fs::read(format!("{dir}/{file}")).expect("fixture");
            let mut headers = HeaderMap::new();
            for name in ["svix-id", "svix-timestamp", "svix-signature"] {
                headers.insert(
                    name,
                    m[name].as_str().expect("header").parse().expect("valid"),
                );
            }
            let sent: u64 = m["svix-timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("timestamp");
            let verified = UnverifiedWebhook::new(headers, Bytes::from(body))
                .verify_at(&verifier, UNIX_EPOCH + Duration::from_secs(sent + 10))
                .unwrap_or_else(|e| panic!("{file}: {e:?}"));
            assert_eq!(verified.id(), m["svix-id"].as_str().expect("id"));
        }
    }
}
