//! The backfill crate's one error type: what failed, worded for the operator (a setting's
//! name first when one is at fault), causes kept.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work; the message starts with its name.
    #[error("{0}")]
    Setting(String),
    /// Clerk's Backend API refused, or answered what cannot be used.
    #[error("{0}")]
    Api(String),
    /// An HTTP request or answer that failed, with what was asked.
    #[error("{what}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// The database the drift is measured in, with what was being done.
    #[error("{what}")]
    Database {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("publishing to {topic}")]
    Publish {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The state file.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An event made from a listed object that the routing refuses.
    #[error("a listed object makes no routable event")]
    Event(#[from] clerk_sync_core::Error),
    #[error("encoding JSON")]
    Json(#[from] serde_json::Error),
    /// The Pushgateway refused the report or could not be reached.
    #[error("{0}")]
    Push(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
