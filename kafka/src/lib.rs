//! Every Kafka client clerk-sync makes, built in one place: [`config`] gives each role its
//! settings and the `KAFKA_OPTIONS` properties it reads ([`options`]), and [`Replaceable`]
//! is an idempotent producer that replaces itself once the broker no longer accepts it;
//! [`refusal`] tells at start-up whether the brokers let these settings in at all;
//! [`provenance`] checks who wrote a record before it is believed, and signs clerk-sync's own.

mod clients;
mod error;
mod headers;
pub mod options;
mod preflight;
pub mod provenance;
mod replaceable;
pub mod topics;

pub use clients::{config, Membership, Role};
pub use error::Error;
pub use headers::event_headers;
pub use preflight::refusal;
pub use replaceable::{delivery_error, Replaceable};
