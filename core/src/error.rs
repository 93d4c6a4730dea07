use std::fmt;

/// Why some JSON could not be read: where, and what was wrong, never the offending value (it may
/// be personal data and ends up in logs and dead letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonProblem {
    /// The field path, e.g. `data.created_at`; empty for the document itself.
    pub path: String,
    pub problem: String,
}

impl JsonProblem {
    pub(crate) fn new(path: String, e: &serde_json::Error) -> Self {
        let text = e.to_string();
        // serde_json appends " at line L column C".
        let text = text.split(" at line ").next().unwrap_or_default();
        let problem = if text.starts_with("invalid type") || text.starts_with("invalid value") {
            match text.rsplit_once(", expected ") {
                Some((_, expected)) => format!("wrong type or value, expected {expected}"),
                None => "wrong type or value".to_owned(),
            }
        } else {
            text.to_owned()
        };
        JsonProblem {
            path: redact_path(&path),
            problem: format!("{problem} (line {}, column {})", e.line(), e.column()),
        }
    }
}

/// Field names the decoders declare. A path segment that is not one of them is a key from the
/// body (an end user's `unsafe_metadata`, an application's `public_metadata`): it and what
/// follows are replaced, so no body key reaches a log, an HTTP answer or a dead letter.
const KNOWN_FIELDS: &[&str] = &[
    "type",
    "timestamp",
    "data",
    "object",
    "id",
    "first_name",
    "last_name",
    "username",
    "image_url",
    "external_id",
    "email_addresses",
    "email_address",
    "primary_email_address_id",
    "created_at",
    "updated_at",
    "organization",
    "public_user_data",
    "user_id",
    "identifier",
    "role",
    "permissions",
    "slug",
    "name",
];

/// Fields whose keys are chosen by users or applications: named, what is inside them is not.
const FREE_FORM: &[&str] = &["public_metadata", "private_metadata", "unsafe_metadata"];

fn redact_path(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('.') {
        let name = segment.split('[').next().unwrap_or_default();
        if kept.last().is_some_and(|last| FREE_FORM.contains(last)) {
            kept.push("<key>");
            break;
        }
        if segment.is_empty() || KNOWN_FIELDS.contains(&name) || FREE_FORM.contains(&segment) {
            kept.push(segment);
        } else {
            kept.push("<key>");
            break;
        }
    }
    kept.join(".")
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "at `{}`: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for JsonProblem {}

/// Everything that can go wrong while turning bytes into a [`crate::ClerkEvent`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("body is not a Clerk event envelope")]
    NotAnEnvelope(#[source] JsonProblem),
    #[error("`{event_type}` event has an invalid `data` object")]
    InvalidData {
        event_type: String,
        #[source]
        source: JsonProblem,
    },
    #[error("`{field}` must not be empty")]
    EmptyId { field: &'static str },
    #[error("`{event_type}` event has no usable `{field}`")]
    MissingField {
        event_type: String,
        field: &'static str,
    },
}

impl Error {
    /// Decoding errors concern the bytes of one event: retrying cannot fix them.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A short, stable machine-readable name, used as a metric label and in dead letters.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotAnEnvelope(_) => "not_an_envelope",
            Error::InvalidData { .. } => "invalid_data",
            Error::EmptyId { .. } => "empty_id",
            Error::MissingField { .. } => "missing_field",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, for logs and dead letters.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_through_keys_from_the_body_names_only_the_known_fields_before_them() {
        assert_eq!(super::redact_path("data.created_at"), "data.created_at");
        assert_eq!(
            super::redact_path("data.email_addresses[2].id"),
            "data.email_addresses[2].id"
        );
        assert_eq!(
            super::redact_path("data.unsafe_metadata.alice@example.com.x[3]"),
            "data.unsafe_metadata.<key>"
        );
        assert_eq!(
            super::redact_path("data.public_metadata"),
            "data.public_metadata"
        );
        assert_eq!(
            super::redact_path("data.public_metadata.role"),
            "data.public_metadata.<key>"
        );
        assert_eq!(super::redact_path("data.alice.bob"), "data.<key>");
        assert_eq!(super::redact_path("."), ".");
    }

    #[test]
    fn a_wrong_value_is_described_without_being_repeated() {
        let body = br#"{"type":"user.created","timestamp":1,"data":{"id":"u","created_at":"Alice <a@b.c>","updated_at":1}}"#;
        let err = crate::ClerkEvent::decode(crate::EventId::parse("m").expect("id"), body)
            .expect_err("invalid");
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(
            chain.contains("created_at") && chain.contains("expected i64"),
            "{chain}"
        );
        assert!(!chain.contains("Alice"), "{chain}");
    }

    #[test]
    fn error_kinds_are_few_and_stable() {
        // The worker pre-registers these as metric labels (clerk_sync_worker::ERROR_KINDS).
        let kinds = [
            "not_an_envelope",
            "invalid_data",
            "empty_id",
            "missing_field",
        ];
        let e = super::Error::EmptyId { field: "x" };
        assert!(kinds.contains(&e.kind()));
    }
}
