//! Every Kafka client clerk-sync makes, built in one place: [`config`] gives each role its
//! settings and the `KAFKA_OPTIONS` properties it reads ([`options`]), and [`Replaceable`]
//! is an idempotent producer that replaces itself once the broker no longer accepts it;
//! [`refusal`] tells at start-up whether the brokers let these settings in at all.

mod clients;
mod headers;
pub mod options;
mod preflight;
mod replaceable;

pub use clients::{config, Membership, Role};
pub use headers::event_headers;
pub use preflight::refusal;
pub use replaceable::Replaceable;
