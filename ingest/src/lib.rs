//! The webhook endpoint: verify with Svix, publish to Kafka, answer only after the broker's ack.

mod api_error;
mod config;
mod error;
mod publish;
mod routes;
mod verify;

pub use api_error::ApiError;
pub use config::IngestConfig;
pub use error::{Error, Result};
pub use publish::{Published, Publisher};
pub use routes::{router, serve, AppState};
pub use verify::{UnverifiedWebhook, VerifiedWebhook, Verifier};
