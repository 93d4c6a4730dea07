/// Everything the worker can fail at. Each error decides its own fate via [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("Kafka error")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("event cannot be decoded")]
    Decode(#[source] clerk_sync_core::Error),
    #[error("record has no value")]
    EmptyRecord,
    #[error("shutting down")]
    Cancelled,
}

impl Error {
    /// Transient errors (the database or broker unreachable, serialization failures, deadlocks)
    /// are retried with backoff; the rest concern one record and never get better.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(e) => database_error_is_transient(e) || is_conflict(e),
            Error::Migrate(_) => false,
            Error::Kafka(_) => true,
            Error::Decode(e) => e.is_retryable(),
            Error::EmptyRecord => false,
            Error::Cancelled => false,
        }
    }

    /// Another transaction's rows stood in the way (deadlock, serialization failure, a lock
    /// not available): they clear within a batch's time, unlike an outage.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Database(e) if is_conflict(e))
    }

    /// A short, stable label for metrics, logs and dead letters.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Database(e) if is_conflict(e) => "database_conflict",
            Error::Database(e) if database_error_is_transient(e) => "database_unavailable",
            Error::Database(_) => "database_rejected",
            Error::Migrate(_) => "migration",
            Error::Kafka(_) => "kafka",
            Error::Decode(e) => e.kind(),
            Error::EmptyRecord => "empty_record",
            Error::Cancelled => "cancelled",
        }
    }
}

/// Every value [`Error::kind`] can take: the bounded `error_kind` metric label.
pub const ERROR_KINDS: &[&str] = &[
    "database_conflict",
    "database_unavailable",
    "database_rejected",
    "migration",
    "kafka",
    "empty_record",
    "cancelled",
    "not_an_envelope",
    "invalid_data",
    "empty_id",
    "missing_field",
];

fn database_error_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08* connection, 53* resources, 57P0* shutdown/cannot connect now.
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
        }),
        _ => false,
    }
}

/// Another transaction's rows stood in the way: 40001 serialization failure, 40P01 deadlock,
/// 55P03 lock not available (a membership meeting another worker's deletion of its user or
/// organization, see `apply::set`, or a row lock waited for longer than the session's
/// `lock_timeout`). Retrying the batch settles it once the other transaction ends.
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| matches!(code.as_ref(), "40001" | "40P01" | "55P03")))
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
