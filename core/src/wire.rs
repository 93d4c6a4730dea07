//! The envelope as ingest's routing reads it. The worker's decoder reads events field by field
//! instead (`crate::fields`), never building a tree of what it does not store.

use serde::Deserialize;
use serde_json::Value;

/// The outer object of every Clerk webhook.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub event_type: String,
    /// Milliseconds since the epoch (seconds in one published example; see [`crate::Millis`]).
    #[serde(default)]
    pub timestamp: Option<i64>,
    pub data: serde_json::Map<String, Value>,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> crate::Result<Self> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let envelope: Self = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            crate::Error::NotAnEnvelope(crate::JsonProblem::new(e.path().to_string(), e.inner()))
        })?;
        // Trailing bytes after the object make it no envelope either.
        json.end()
            .map_err(|e| crate::Error::NotAnEnvelope(crate::JsonProblem::new(String::new(), &e)))?;
        Ok(envelope)
    }
}
