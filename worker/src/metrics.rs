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
    /// Clerk timestamp (ms) of the newest event applied, for the freshness gauge.
    newest_applied_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
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

const LAG_OFFSETS: &str = "Records written but not yet applied (log end minus committed)";
const LAG_SECONDS: &str = "Age of the oldest unapplied record; 0 when caught up";
const FRESHNESS: &str = "Now minus the Clerk timestamp of the newest event applied";

const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl WorkerMetrics {
    pub fn new(registry: Registry, topics: &[String]) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels)?,
            )
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            registered(&registry, Histogram::with_opts(opts)?)
        };
        let events = counter(
            "clerk_sync_worker_events_total",
            "Events consumed, by topic and outcome",
            &["topic", "outcome"],
        )?;
        let retries = counter(
            "clerk_sync_worker_retries_total",
            "Transient failures retried, by error kind",
            &["error_kind"],
        )?;
        let dead_letters = counter(
            "clerk_sync_worker_dead_letters_total",
            "Records sent to the dead-letter topic, by error kind",
            &["error_kind"],
        )?;
        let (lag_offsets, lag_seconds, freshness) = lag_gauges(&registry)?;
        let metrics = WorkerMetrics {
            events,
            batch_size: histogram(
                "clerk_sync_worker_batch_size_events",
                "Records per batch",
                &[
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                ],
            )?,
            batch_duration: histogram(
                "clerk_sync_worker_batch_duration_seconds",
                "Time to apply a batch, retries included",
                SECONDS,
            )?,
            transaction_duration: histogram(
                "clerk_sync_worker_db_transaction_duration_seconds",
                "Time of one batch transaction",
                SECONDS,
            )?,
            retries,
            dead_letters,
            lag_offsets,
            lag_seconds,
            freshness,
            registry: registry.clone(),
            newest_applied_ms: Default::default(),
        };
        metrics.show_every_label_value(topics);
        Ok(metrics)
    }

    /// Every label value shows from the start, at 0, so rates and alerts work at once.
    fn show_every_label_value(&self, topics: &[String]) {
        for kind in ErrorKind::ALL {
            self.retries.with_label_values(&[kind.as_str()]);
            self.dead_letters.with_label_values(&[kind.as_str()]);
        }
        for topic in topics {
            for outcome in EventOutcome::ALL {
                self.events
                    .with_label_values(&[topic.as_str(), outcome.as_str()]);
            }
        }
    }

    pub fn applied_event_at(&self, clerk_timestamp_ms: i64) {
        self.newest_applied_ms
            .fetch_max(clerk_timestamp_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Updates the freshness gauge: now minus the newest applied event's Clerk time.
    pub fn refresh_freshness(&self, now_ms: i64) {
        let newest = self
            .newest_applied_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if newest > 0 {
            self.freshness
                .set(((now_ms - newest).max(0) as f64) / 1000.0);
        }
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

/// `collector`, registered in `registry`.
fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn lag_gauges(registry: &Registry) -> prometheus::Result<(IntGaugeVec, GaugeVec, Gauge)> {
    let partition = ["topic", "partition"];
    Ok((
        registered(
            registry,
            IntGaugeVec::new(
                Opts::new("clerk_sync_consumer_lag_offsets", LAG_OFFSETS),
                &partition,
            )?,
        )?,
        registered(
            registry,
            GaugeVec::new(
                Opts::new("clerk_sync_consumer_lag_seconds", LAG_SECONDS),
                &partition,
            )?,
        )?,
        registered(
            registry,
            Gauge::new("clerk_sync_worker_freshness_seconds", FRESHNESS)?,
        )?,
    ))
}
