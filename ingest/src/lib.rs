//! The webhook endpoint: verify with Svix, publish to Kafka, answer only after the broker's ack.

mod api_error;
mod app;
mod error;
pub mod limits;
mod metrics;
mod outcome;
mod publish;
mod routes;
mod server;
mod verify;

pub use api_error::ApiError;
pub use app::{Ingest, IngestConfig};
pub use error::{error_chain, Error, Result};
pub use metrics::IngestMetrics;
pub use outcome::IngestOutcome;
pub use publish::{BoxFuture, Publish, Published, Publisher, Readiness};
use routes::{router, AppState};
use server::serve;
pub use server::{serve_router, ServeLimits};
pub use verify::{UnverifiedWebhook, VerifiedWebhook, Verifier};
