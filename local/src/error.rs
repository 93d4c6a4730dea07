//! The local stack's one error type: what could not be done, said for the person running it
//! (often what to install), causes kept.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the local stack could not do, and what to do about it.
    #[error("{0}")]
    Failed(String),
    /// A step that failed, with its cause.
    #[error("{what}")]
    Step {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("I/O")]
    Io(#[from] std::io::Error),
    #[error("a blocking step did not finish")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Says which step failed, on a result whose error is kept as the cause, or on a missing value.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Step {
            what: what.into(),
            source: Box::new(source),
        })
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Step {
            what: what(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::Failed(what.into()))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| Error::Failed(what()))
    }
}

/// Returns [`Error::Failed`] with a formatted message.
macro_rules! bail {
    ($($message:tt)*) => {
        return Err($crate::Error::Failed(format!($($message)*)))
    };
}
pub(crate) use bail;
