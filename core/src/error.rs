/// Everything that can go wrong while turning bytes into a [`crate::ClerkEvent`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("body is not a Clerk event envelope")]
    NotAnEnvelope(#[source] serde_json::Error),
    #[error("`{event_type}` event has an invalid `data` object")]
    InvalidData {
        event_type: String,
        #[source]
        source: serde_json::Error,
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

#[cfg(test)]
mod tests {
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
