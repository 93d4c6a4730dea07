use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::IngestOutcome;

/// Ingest's metrics, registered in a registry the caller owns (no global state).
#[derive(Clone)]
pub struct IngestMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub produce_duration: Histogram,
    pub in_flight: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl IngestMetrics {
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "clerk_sync_ingest_requests_total",
                "Webhook requests by outcome",
            ),
            &["outcome"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "clerk_sync_ingest_request_duration_seconds",
                "Webhook request handling time",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let produce_duration = Histogram::with_opts(
            HistogramOpts::new(
                "clerk_sync_ingest_produce_duration_seconds",
                "Time until the broker acknowledged a record",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let in_flight = IntGauge::new(
            "clerk_sync_ingest_in_flight_requests",
            "Webhook requests being handled",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(produce_duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        // Every outcome shows from the start, at 0, so rates and alerts work before the first error.
        for outcome in IngestOutcome::ALL {
            requests.with_label_values(&[outcome.as_str()]);
            request_duration.with_label_values(&[outcome.as_str()]);
        }
        Ok(IngestMetrics {
            registry,
            requests,
            request_duration,
            produce_duration,
            in_flight,
        })
    }

    /// Counts one request and its handling time, under its outcome.
    pub fn request(&self, outcome: IngestOutcome, seconds: f64) {
        self.requests.with_label_values(&[outcome.as_str()]).inc();
        self.request_duration
            .with_label_values(&[outcome.as_str()])
            .observe(seconds);
    }

    /// The Prometheus text format of everything in the registry.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
