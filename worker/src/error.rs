/// Everything the worker can fail at. Each error decides its own fate via [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error{}", sqlstate_suffix(.0))]
    Database(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("Kafka error")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("event cannot be decoded")]
    Decode(#[source] clerk_sync_core::Error),
    #[error("record has no value")]
    EmptyRecord,
    /// Neither Clerk (through Svix) nor clerk-sync's own key signed the record: whoever wrote
    /// it could reach the topic, which is not enough to be believed.
    #[error("record is not signed by Clerk or clerk-sync")]
    Unsigned(#[source] clerk_sync_kafka::provenance::Unsigned),
    /// A version later than now beyond the allowed clock skew: applied, it would outrank every
    /// real update until that time.
    #[error(
        "event is dated {ahead_ms} ms in the future, past MAX_CLOCK_SKEW_SECS ({skew_secs} s)"
    )]
    FutureVersion { ahead_ms: i64, skew_secs: u64 },
    /// Every record of a batch failed alone with the same error: no set of records is that
    /// uniformly bad, the database is (a trigger, a constraint or a setting the records cannot
    /// satisfy). Retried like an outage, never dead-lettered.
    #[error("each of the {records} records of a batch was rejected alone with the same error: the database, not the records, is at fault")]
    EveryRecordRejected {
        records: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("shutting down")]
    Cancelled,
    /// The dead-letter topic cannot be read as expected (missing, a letter without context).
    #[error("dead-letter topic: {0}")]
    DeadLetterTopic(String),
    /// The brokers refuse this principal the topic (an ACL missing): never "no records".
    #[error("the brokers do not authorize reading topic {topic} (grant this principal Read and Describe on it)")]
    TopicNotAuthorized { topic: String },
    /// An error with what was being done (which database `compare` was reading, say).
    #[error("{what}")]
    Within {
        what: String,
        #[source]
        source: Box<Error>,
    },
    /// A setting refused, in a line that names it (a setting named at run time: `--with`).
    #[error("{0}")]
    Refused(String),
    #[error("{setting}: expected {expected}")]
    Setting {
        setting: &'static str,
        expected: String,
    },
}

/// Who a database error says is at fault, which decides between retrying and dead-lettering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseFault {
    /// Another transaction's rows stood in the way: retried soon.
    Conflict,
    /// The database cannot be reached or is shutting down: retried with backoff.
    Unavailable,
    /// The database is reachable but not fit to apply anything: schema missing or older,
    /// read-only, privileges revoked, statements cancelled or timed out, prepared statements
    /// lost behind a pooler, or a code nothing here knows. Retried with backoff.
    Environment,
    /// The record's values break a type or a constraint: dead-lettered.
    Record,
}

impl DatabaseFault {
    /// Classifies by what the error says about the record. Only data exceptions (class 22) and
    /// integrity violations (class 23) that no race between records explains are the record's.
    pub fn of(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => DatabaseFault::Unavailable,
            sqlx::Error::Database(db) => match db.code() {
                Some(code) => Self::of_sqlstate(&code),
                None => DatabaseFault::Environment,
            },
            // A value the driver cannot encode is the record's; a row or column the statement
            // did not find is a schema that differs from the one the worker was built for.
            sqlx::Error::Encode(_) => DatabaseFault::Record,
            _ => DatabaseFault::Environment,
        }
    }

    /// Classifies a SQLSTATE (Postgres's "Appendix A. Error Codes").
    pub fn of_sqlstate(code: &str) -> Self {
        match code {
            // 40001 serialization failure, 40P01 deadlock, 55P03 lock not available (NOWAIT, or
            // `lock_timeout`).
            "40001" | "40P01" | "55P03" => DatabaseFault::Conflict,
            // A unique, foreign-key, exclusion or restrict violation can be another record's
            // row not yet moved (two users trading an email under an application's unique
            // index, a parent applied from another partition): it clears as they arrive.
            "23505" | "23503" | "23P01" | "23001" => DatabaseFault::Environment,
            _ if code.starts_with("22") || code.starts_with("23") => DatabaseFault::Record,
            // 54: a value past one of Postgres's limits (a JSON too deep for its parser, a
            // row too large for a btree index): no retry makes it fit.
            _ if code.starts_with("54") => DatabaseFault::Record,
            // 08 connection exceptions, 53 insufficient resources, 57P01-57P05 shutdown or
            // cannot connect now (57014, a cancel or statement timeout, is the environment).
            _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0") => {
                DatabaseFault::Unavailable
            }
            _ => DatabaseFault::Environment,
        }
    }
}

impl Error {
    /// This error, with what was being done when it happened.
    pub fn within(self, what: &str) -> Error {
        Error::Within {
            what: what.to_owned(),
            source: Box::new(self),
        }
    }

    /// Transient errors (the database or broker unreachable or unfit, conflicts between
    /// transactions) are retried with backoff; the rest concern one record and never get better.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(e) => DatabaseFault::of(e) != DatabaseFault::Record,
            Error::Migrate(_) => false,
            Error::Kafka(_) => true,
            Error::Decode(e) => e.is_retryable(),
            Error::EmptyRecord | Error::Unsigned(_) | Error::FutureVersion { .. } => false,
            Error::EveryRecordRejected { .. } => true,
            Error::Cancelled
            | Error::Setting { .. }
            | Error::DeadLetterTopic(_)
            | Error::TopicNotAuthorized { .. }
            | Error::Refused(_) => false,
            Error::Within { source, .. } => source.is_retryable(),
        }
    }

    /// Another transaction's rows stood in the way (deadlock, serialization failure, a lock
    /// not available): they clear within a batch's time, unlike an outage.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Database(e) if DatabaseFault::of(e) == DatabaseFault::Conflict)
    }

    /// The SQLSTATE of a database error, if it has one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Error::Database(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            Error::EveryRecordRejected { source, .. } => source.sqlstate(),
            _ => None,
        }
    }

    /// A short, stable label for metrics, logs and dead letters.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Database(e) => match DatabaseFault::of(e) {
                DatabaseFault::Conflict => ErrorKind::DatabaseConflict,
                DatabaseFault::Unavailable => ErrorKind::DatabaseUnavailable,
                DatabaseFault::Environment => ErrorKind::DatabaseEnvironment,
                DatabaseFault::Record => ErrorKind::DatabaseRejected,
            },
            Error::EveryRecordRejected { .. } => ErrorKind::DatabaseEnvironment,
            Error::Migrate(_) => ErrorKind::Migration,
            Error::Kafka(_) => ErrorKind::Kafka,
            Error::Decode(e) => match e {
                clerk_sync_core::Error::NotAnEnvelope(_) => ErrorKind::NotAnEnvelope,
                clerk_sync_core::Error::InvalidData { .. } => ErrorKind::InvalidData,
                clerk_sync_core::Error::EmptyId { .. } => ErrorKind::EmptyId,
                clerk_sync_core::Error::MissingField { .. } => ErrorKind::MissingField,
            },
            Error::EmptyRecord => ErrorKind::EmptyRecord,
            Error::Unsigned(_) => ErrorKind::Unsigned,
            Error::FutureVersion { .. } => ErrorKind::FutureVersion,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Setting { .. } | Error::Refused(_) => ErrorKind::Setting,
            Error::DeadLetterTopic(_) | Error::TopicNotAuthorized { .. } => ErrorKind::Kafka,
            Error::Within { source, .. } => source.kind(),
        }
    }
}

fn sqlstate_suffix(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .map(|code| format!(" (SQLSTATE {code})"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// What an error is, in a word: the bounded `error_kind` label of metrics, logs and dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    DatabaseConflict,
    DatabaseUnavailable,
    DatabaseEnvironment,
    DatabaseRejected,
    Migration,
    Kafka,
    EmptyRecord,
    Cancelled,
    NotAnEnvelope,
    InvalidData,
    EmptyId,
    MissingField,
    Unsigned,
    FutureVersion,
    /// A setting that cannot work (start-up only).
    Setting,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::DatabaseConflict,
        ErrorKind::DatabaseUnavailable,
        ErrorKind::DatabaseEnvironment,
        ErrorKind::DatabaseRejected,
        ErrorKind::Migration,
        ErrorKind::Kafka,
        ErrorKind::EmptyRecord,
        ErrorKind::Cancelled,
        ErrorKind::NotAnEnvelope,
        ErrorKind::InvalidData,
        ErrorKind::EmptyId,
        ErrorKind::MissingField,
        ErrorKind::Unsigned,
        ErrorKind::FutureVersion,
        ErrorKind::Setting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::DatabaseConflict => "database_conflict",
            ErrorKind::DatabaseUnavailable => "database_unavailable",
            ErrorKind::DatabaseEnvironment => "database_environment",
            ErrorKind::DatabaseRejected => "database_rejected",
            ErrorKind::Migration => "migration",
            ErrorKind::Kafka => "kafka",
            ErrorKind::EmptyRecord => "empty_record",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::NotAnEnvelope => "not_an_envelope",
            ErrorKind::InvalidData => "invalid_data",
            ErrorKind::EmptyId => "empty_id",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::Unsigned => "unsigned",
            ErrorKind::FutureVersion => "future_version",
            ErrorKind::Setting => "setting",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<rdkafka::error::KafkaError> for Error {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Error::Kafka(e)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::DatabaseFault::{self, *};

    #[test]
    fn only_data_and_constraint_errors_that_no_race_explains_are_the_records_fault() {
        let cases = [
            // The record's values.
            ("22P02", Record), // invalid text representation
            ("22P05", Record), // untranslatable character
            ("22003", Record), // numeric value out of range
            ("23502", Record), // not-null violation
            ("23514", Record), // check violation
            ("54000", Record), // program limit exceeded (index row too large)
            ("54001", Record), // statement too complex (JSON too deep)
            // Races between records.
            ("23505", Environment),
            ("23503", Environment),
            ("23P01", Environment),
            // Conflicts with other transactions.
            ("40001", Conflict),
            ("40P01", Conflict),
            ("55P03", Conflict),
            // The database unreachable or going away.
            ("08006", Unavailable),
            ("53300", Unavailable),
            ("57P01", Unavailable),
            ("57P03", Unavailable),
            // The environment: never a record's fault.
            ("42P01", Environment), // undefined table (not migrated)
            ("42703", Environment), // undefined column (older schema)
            ("25006", Environment), // read-only transaction (failover)
            ("42501", Environment), // insufficient privilege
            ("57014", Environment), // query cancelled or statement timeout
            ("26000", Environment), // prepared statement lost behind a pooler
            ("42P05", Environment), // prepared statement already exists
            ("0A000", Environment), // feature not supported (a pooler's answer)
            ("XX000", Environment), // internal error
            ("ZZ999", Environment), // a code nothing here knows
        ];
        for (code, fault) in cases {
            assert_eq!(DatabaseFault::of_sqlstate(code), fault, "{code}");
        }
    }
}
