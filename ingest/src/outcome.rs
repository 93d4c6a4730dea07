/// How a webhook request ended: the bounded values of the `outcome` label, one per answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IngestOutcome {
    /// Published, and the broker acknowledged it (200).
    Accepted,
    /// A verified event the sync does not mirror (200, not published).
    IgnoredType,
    /// A signature missing, malformed or matching no secret (401).
    BadSignature,
    /// A signature timestamp outside the window (401); its label is `stale`, kept for the
    /// dashboards and alerts (the worker's `stale` outcome is an older version).
    StaleTimestamp,
    TooLarge,
    BadPayload,
    /// The broker did not take the record in time (503).
    Unavailable,
    /// Too many requests in flight (503).
    Overloaded,
    /// Not done within the request timeout (408).
    Timeout,
}

impl IngestOutcome {
    pub const ALL: [IngestOutcome; 9] = [
        IngestOutcome::Accepted,
        IngestOutcome::IgnoredType,
        IngestOutcome::BadSignature,
        IngestOutcome::StaleTimestamp,
        IngestOutcome::TooLarge,
        IngestOutcome::BadPayload,
        IngestOutcome::Unavailable,
        IngestOutcome::Overloaded,
        IngestOutcome::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Accepted => "accepted",
            IngestOutcome::IgnoredType => "ignored_type",
            IngestOutcome::BadSignature => "bad_signature",
            IngestOutcome::StaleTimestamp => "stale",
            IngestOutcome::TooLarge => "too_large",
            IngestOutcome::BadPayload => "bad_payload",
            IngestOutcome::Unavailable => "unavailable",
            IngestOutcome::Overloaded => "overloaded",
            IngestOutcome::Timeout => "timeout",
        }
    }
}
