//! The webhook endpoint: verify with Svix, publish to Kafka, answer only after the broker's ack.

mod api_error;
mod error;
mod metrics;
mod publish;
mod routes;
mod server;
mod verify;

pub use api_error::ApiError;
pub use error::{error_chain, Error, Result};
pub use metrics::{IngestMetrics, OUTCOMES};
pub use publish::{Published, Publisher};
pub use routes::{router, AppState};
pub use server::{serve, serve_router, ServeLimits};
pub use verify::{UnverifiedWebhook, VerifiedWebhook, Verifier};
