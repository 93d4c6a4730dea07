use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::apply::Outcome;
use crate::lag::PartitionLag;
use crate::ErrorKind;

/// The worker's metrics, registered in a registry the caller owns (no global state).
#[derive(Clone)]
pub struct WorkerMetrics {
    registry: Registry,
    pub events: IntCounterVec,
    pub batch_size: Histogram,
    pub batch_duration: Histogram,
    pub transaction_duration: Histogram,
    pub retries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub lag_offsets: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub freshness: Gauge,
}

/// What became of a consumed event: the bounded `outcome` label of
/// `clerk_sync_worker_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventOutcome {
    Applied,
    Stale,
    Duplicate,
    Ignored,
    DeadLettered,
}

impl EventOutcome {
    pub const ALL: [EventOutcome; 5] = [
        EventOutcome::Applied,
        EventOutcome::Stale,
        EventOutcome::Duplicate,
        EventOutcome::Ignored,
        EventOutcome::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Stale => "stale",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Ignored => "ignored",
            EventOutcome::DeadLettered => "dead_lettered",
        }
    }
}

impl From<Outcome> for EventOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Applied => EventOutcome::Applied,
            Outcome::Stale => EventOutcome::Stale,
            Outcome::Duplicate => EventOutcome::Duplicate,
            Outcome::Ignored => EventOutcome::Ignored,
        }
    }
}

const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl WorkerMetrics {
    pub fn new(registry: Registry, topics: &[String]) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "clerk_sync_worker_events_total",
                "Events consumed, by topic and outcome",
            ),
            &["topic", "outcome"],
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("clerk_sync_worker_batch_size_events", "Records per batch").buckets(
                vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                ],
            ),
        )?;
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "clerk_sync_worker_batch_duration_seconds",
                "Time to apply a batch, retries included",
            )
            .buckets(SECONDS.to_vec()),
        )?;
        let transaction_duration = Histogram::with_opts(
            HistogramOpts::new(
                "clerk_sync_worker_db_transaction_duration_seconds",
                "Time of one batch transaction",
            )
            .buckets(SECONDS.to_vec()),
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "clerk_sync_worker_retries_total",
                "Transient failures retried, by error kind",
            ),
            &["error_kind"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "clerk_sync_worker_dead_letters_total",
                "Records sent to the dead-letter topic, by error kind",
            ),
            &["error_kind"],
        )?;
        let lag_offsets = IntGaugeVec::new(
            Opts::new(
                "clerk_sync_consumer_lag_offsets",
                "Records written but not yet applied (log end minus committed)",
            ),
            &["topic", "partition"],
        )?;
        let lag_seconds = GaugeVec::new(
            Opts::new(
                "clerk_sync_consumer_lag_seconds",
                "Age of the oldest unapplied record; 0 when caught up",
            ),
            &["topic", "partition"],
        )?;
        let freshness = Gauge::new(
            "clerk_sync_worker_freshness_seconds",
            "Now minus the Clerk timestamp of the newest event applied",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(batch_duration.clone()))?;
        registry.register(Box::new(transaction_duration.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(lag_offsets.clone()))?;
        registry.register(Box::new(lag_seconds.clone()))?;
        registry.register(Box::new(freshness.clone()))?;
        for kind in ErrorKind::ALL {
            retries.with_label_values(&[kind.as_str()]);
            dead_letters.with_label_values(&[kind.as_str()]);
        }
        for topic in topics {
            for outcome in EventOutcome::ALL {
                events.with_label_values(&[topic.as_str(), outcome.as_str()]);
            }
        }
        Ok(WorkerMetrics {
            registry,
            events,
            batch_size,
            batch_duration,
            transaction_duration,
            retries,
            dead_letters,
            lag_offsets,
            lag_seconds,
            freshness,
        })
    }

    pub fn record_lag(&self, lags: &[PartitionLag]) {
        for l in lags {
            let partition = l.partition.to_string();
            self.lag_offsets
                .with_label_values(&[&l.topic, &partition])
                .set(l.lag);
            self.lag_seconds
                .with_label_values(&[&l.topic, &partition])
                .set(l.oldest_unapplied_age_seconds);
        }
    }

    /// The Prometheus text format of everything in the registry.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
