//! The Clerk event model of clerk-sync and the pure decisions made on it.
//!
//! Nothing here performs I/O: the ingest and worker crates parse bytes into these types at the
//! edge and then only handle values that are known to be well formed.
//!
//! # Error policy
//! - Every fallible function returns [`Error`]; causes are kept as `#[source]`, never flattened.
//! - An error decides its own fate through [`Error::is_retryable`]: decoding errors are about the
//!   bytes of one event and never get better by retrying, so they are permanent.
//! - Error messages name the field or event type at fault and never contain personal data.

mod error;
mod event;
mod fields;
mod ids;
mod json_text;
mod millis;
pub mod mirror;
pub mod record_header;
pub mod reduce;
mod route_body;
mod routing;
#[cfg(feature = "testkit")]
pub mod routing_agreement;
mod rows;
mod secret;
#[cfg(feature = "testkit")]
pub mod testkit;
mod wire;

pub use error::{error_chain, Error, JsonProblem, Result};
pub use event::{
    ClerkEvent, EventMeta, Membership, MembershipDeleted, OrgDeleted, Organization, User,
    UserDeleted, UserStub,
};
pub use ids::{EventId, MembershipId, OrgId, UserId};
pub use json_text::JsonText;
pub use millis::Millis;
pub use route_body::{route_body, Routed};
pub use routing::{route, Route, TopicRole, Topics};
pub use secret::Secret;
pub use wire::Envelope;
