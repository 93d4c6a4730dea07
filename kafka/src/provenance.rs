//! Who wrote a record on the event topics, checked before anything in it is applied. Anyone who
//! can reach a topic can produce to it; only two writers are believed:
//!
//! - **Clerk**, through ingest: the record carries the webhook's own Svix headers (`svix-id`,
//!   `svix-timestamp`, `svix-signature`) and its exact body, so the signature Svix made is
//!   checked again against the endpoint's signing secrets (the timestamp window is not: a log is
//!   replayed long after).
//! - **clerk-sync itself** (backfill, prune, a redrive an operator vouched for): HMAC-SHA256 with
//!   a key of the project's own (`RECORD_SIGNING_KEY`) over the record's id, type and body, in
//!   `clerk-sync-signature` as `v1,<base64>`.
//!
//! Several secrets and keys are accepted at once (rotation): a record verifies when any one of
//! them made any one of its signatures.

use base64::Engine;
use clerk_sync_core::{record_header, Secret};
use rdkafka::message::Headers;

use crate::Error;

/// The shortest project key taken, in bytes: HMAC-SHA256's own block of randomness.
pub const MIN_KEY_BYTES: usize = 32;

/// Who signed a record that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// Svix, for Clerk: the record is a webhook as delivered.
    Clerk,
    /// clerk-sync's own key: backfill, prune or a vouched redrive.
    ClerkSync,
}

/// Why a record is not believed. Never says which secret or what the signature was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsigned {
    #[error("the record carries no signature (neither svix-signature nor clerk-sync-signature)")]
    NoSignature,
    #[error(
        "the record's svix-id, svix-timestamp or clerk-event-type header is missing or not text"
    )]
    MissingHeader,
    #[error("no configured secret or key made the record's signature (a forgery, a changed byte, or a retired secret no longer configured)")]
    BadSignature,
}

/// The signing secrets and keys a record is checked against.
pub struct Provenance {
    /// Clerk's signing keys: each secret's base64 after `whsec_`, decoded as Svix does.
    clerk: Vec<Vec<u8>>,
    own: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provenance")
            .field("webhook_secrets", &self.clerk.len())
            .field("record_keys", &self.own.len())
            .finish()
    }
}

impl Provenance {
    /// `webhook_secrets` are Clerk's (`whsec_…`, current and retired), `record_keys` the
    /// project's own (base64, the first of them signs).
    pub fn new(webhook_secrets: &[Secret], record_keys: &[Secret]) -> Result<Self, Error> {
        let clerk = webhook_secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let key = s.expose().strip_prefix("whsec_").unwrap_or(s.expose());
                match base64::engine::general_purpose::STANDARD.decode(key) {
                    Ok(bytes) if !bytes.is_empty() => Ok(bytes),
                    _ => Err(Error::Setting {
                        setting: "CLERK_WEBHOOK_SECRET",
                        expected: format!("secret {} as whsec_ followed by base64", i + 1),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let own = record_keys
            .iter()
            .enumerate()
            .map(|(i, k)| key_bytes(k, i))
            .collect::<Result<Vec<_>, _>>()?;
        if clerk.is_empty() {
            return Err(Error::Setting {
                setting: "CLERK_WEBHOOK_SECRET",
                expected:
                    "the endpoint's signing secret(s), to verify every record before it is applied"
                        .into(),
            });
        }
        Ok(Provenance { clerk, own })
    }

    /// Who signed the record with these headers and this body, or why nobody did.
    pub fn verify<H: Headers>(&self, headers: Option<&H>, body: &[u8]) -> Result<Signer, Unsigned> {
        let header = |name: &str| -> Option<&str> {
            headers?
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| std::str::from_utf8(h.value?).ok())
        };
        let svix = header(record_header::SIGNATURE);
        let own = header(record_header::OWN_SIGNATURE);
        if svix.is_none() && own.is_none() {
            return Err(Unsigned::NoSignature);
        }
        let id = header(record_header::EVENT_ID).ok_or(Unsigned::MissingHeader)?;
        if let Some(signatures) = svix {
            // Svix's scheme (svix-webhooks' `Webhook::sign`): HMAC-SHA256 over
            // "{id}.{timestamp}.{body}", base64, as `v1,<sig>` among space-separated signatures.
            // Computed here over the body in place rather than through the svix crate, which
            // copies the body into a string per check (BENCHMARKS.md, provenance); the unit
            // tests sign with the svix crate itself, so the two cannot drift apart.
            let timestamp = header(record_header::TIMESTAMP).ok_or(Unsigned::MissingHeader)?;
            let made: Vec<&str> = signatures
                .split(' ')
                .filter_map(|s| s.strip_prefix("v1,"))
                .collect();
            for key in &self.clerk {
                let expected = svix_mac(key, id, timestamp, body);
                if made.iter().any(|m| same(&expected, m)) {
                    return Ok(Signer::Clerk);
                }
            }
        }
        if let Some(signatures) = own {
            let event_type = header(record_header::EVENT_TYPE).ok_or(Unsigned::MissingHeader)?;
            let expected: Vec<String> = self
                .own
                .iter()
                .map(|key| mac(key, id, event_type, body))
                .collect();
            let made = signatures.split(' ').filter_map(|s| s.strip_prefix("v1,"));
            for signature in made {
                if expected.iter().any(|e| same(e, signature)) {
                    return Ok(Signer::ClerkSync);
                }
            }
        }
        Err(Unsigned::BadSignature)
    }
}

/// Signs the records clerk-sync writes itself, with the first of the project's keys.
#[derive(Clone)]
pub struct RecordSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for RecordSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSigner([redacted])")
    }
}

impl RecordSigner {
    /// Signs with the first of `record_keys`; none is a setting to name.
    pub fn new(record_keys: &[Secret]) -> Result<Self, Error> {
        let Some(first) = record_keys.first() else {
            return Err(Error::Setting {
                setting: "RECORD_SIGNING_KEY",
                expected: format!(
                    "a key of at least {MIN_KEY_BYTES} random bytes in base64 (openssl rand -base64 32), to sign the records clerk-sync writes"
                ),
            });
        };
        Ok(RecordSigner {
            key: key_bytes(first, 0)?,
        })
    }

    /// The `clerk-sync-signature` header's value for a record.
    pub fn sign(&self, id: &str, event_type: &str, body: &[u8]) -> String {
        format!("v1,{}", mac(&self.key, id, event_type, body))
    }
}

fn key_bytes(key: &Secret, index: usize) -> Result<Vec<u8>, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.expose().trim())
        .unwrap_or_default();
    if bytes.len() < MIN_KEY_BYTES {
        return Err(Error::Setting {
            setting: "RECORD_SIGNING_KEY",
            expected: format!(
                "key {} as base64 of at least {MIN_KEY_BYTES} random bytes (openssl rand -base64 32)",
                index + 1
            ),
        });
    }
    Ok(bytes)
}

/// `base64(HMAC-SHA256(key, "{id}.{type}.{body}"))`: the separators cannot be moved, since
/// a Svix id and a Clerk type hold no '.'… and if one did, the body's own `type` still has to
/// match what the worker applies.
fn mac(key: &[u8], id: &str, event_type: &str, body: &[u8]) -> String {
    hmac_base64(
        key,
        [id.as_bytes(), b".", event_type.as_bytes(), b".", body],
    )
}

fn svix_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    hmac_base64(key, [id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
}

/// `base64(HMAC-SHA256(key, parts…))`. `sha2` uses the CPU's SHA extensions where it has them:
/// checking every record costs about a microsecond (BENCHMARKS.md, provenance).
fn hmac_base64<const N: usize>(key: &[u8], parts: [&[u8]; N]) -> String {
    use hmac::Mac;
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Constant-time equality, so that a forger learns nothing from how long a refusal takes.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders};
    use svix::webhooks::Webhook;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD_SECRET: &str = "whsec_dGhpcyBpcyBhbiBvbGQgc2VjcmV0IG9mIG91cnM=";

    fn key(fill: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([fill; 32]))
    }

    fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(*value),
            })
        })
    }

    fn svix_signed(secret: &str, body: &[u8]) -> OwnedHeaders {
        let signature = Webhook::new(secret)
            .expect("a secret")
            .sign("msg_1", 1_700_000_000, body)
            .expect("utf-8");
        headers(&[
            (record_header::EVENT_ID, "msg_1"),
            (record_header::TIMESTAMP, "1700000000"),
            (record_header::SIGNATURE, &signature),
        ])
    }

    fn provenance(secrets: &[&str], keys: &[Secret]) -> Provenance {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Provenance::new(&secrets, keys).expect("valid settings")
    }

    #[test]
    fn a_record_as_svix_signed_it_verifies_as_clerks_long_after_its_timestamp() {
        let body = br#"{"type":"user.created"}"#;
        let p = provenance(&[SECRET], &[]);
        assert_eq!(
            p.verify(Some(&svix_signed(SECRET, body)), body),
            Ok(Signer::Clerk)
        );
    }

    #[test]
    fn a_record_signed_with_a_retired_secret_verifies_while_that_secret_is_configured() {
        let body = br#"{"type":"user.created"}"#;
        let record = svix_signed(OLD_SECRET, body);
        assert_eq!(
            provenance(&[SECRET, OLD_SECRET], &[]).verify(Some(&record), body),
            Ok(Signer::Clerk)
        );
        assert_eq!(
            provenance(&[SECRET], &[]).verify(Some(&record), body),
            Err(Unsigned::BadSignature)
        );
    }

    #[test]
    fn a_record_without_any_signature_or_with_one_byte_changed_is_not_believed() {
        let body = br#"{"type":"organizationMembership.updated","data":{"role":"org:member"}}"#;
        let p = provenance(&[SECRET], &[key(7)]);
        let bare = headers(&[(record_header::EVENT_ID, "msg_1")]);
        assert_eq!(p.verify(Some(&bare), body), Err(Unsigned::NoSignature));
        assert_eq!(
            p.verify(None::<&OwnedHeaders>, body),
            Err(Unsigned::NoSignature)
        );
        let forged = br#"{"type":"organizationMembership.updated","data":{"role":"org:admin"}}"#;
        assert_eq!(
            p.verify(Some(&svix_signed(SECRET, body)), forged),
            Err(Unsigned::BadSignature)
        );
    }

    #[test]
    fn a_record_clerk_sync_signed_verifies_with_that_key_and_not_after_its_type_is_changed() {
        let body = br#"{"type":"user.deleted"}"#;
        let signature =
            RecordSigner::new(&[key(7)])
                .expect("a key")
                .sign("bf_1", "user.deleted", body);
        let record = |event_type: &str| {
            headers(&[
                (record_header::EVENT_ID, "bf_1"),
                (record_header::EVENT_TYPE, event_type),
                (record_header::OWN_SIGNATURE, &signature),
            ])
        };
        let p = provenance(&[SECRET], &[key(9), key(7)]);
        assert_eq!(
            p.verify(Some(&record("user.deleted")), body),
            Ok(Signer::ClerkSync)
        );
        assert_eq!(
            p.verify(Some(&record("user.updated")), body),
            Err(Unsigned::BadSignature)
        );
        assert_eq!(
            provenance(&[SECRET], &[key(9)]).verify(Some(&record("user.deleted")), body),
            Err(Unsigned::BadSignature)
        );
    }

    #[test]
    fn a_short_or_undecodable_record_key_is_refused_naming_the_setting() {
        for bad in ["c2hvcnQ=", "not base64 at all!"] {
            let e = RecordSigner::new(&[Secret::new(bad)]).expect_err("refused");
            assert!(e.to_string().starts_with("RECORD_SIGNING_KEY"), "{e}");
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }
}
