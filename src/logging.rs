//! Logs and traces. Logs go to stderr (text, or JSON with `LOG_FORMAT=json`), filtered by
//! `RUST_LOG`. Traces are exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
//! the standard `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf` or `http/json`) and `OTEL_BSP_*` variables apply.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;

/// Log format: readable by default, JSON for log shippers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("trace export shutdown: {e}");
            }
        }
    }
}

fn tracer_provider(role: &str) -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .ok()
        .filter(|e| !e.is_empty())?;
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!(
                "OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: cannot create the trace exporter: {e}"
            );
            return None;
        }
    };
    let service =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| format!("clerk-sync-{role}"));
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build(),
    )
}

/// Installs logging (and tracing export when configured) for the process running `role`.
pub fn init(format: LogFormat, role: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let provider = tracer_provider(role);
    // Traces keep clerk-sync's own spans whatever RUST_LOG says about logs.
    let traced = Targets::new()
        .with_target("clerk_sync", Level::INFO)
        .with_target("clerk_sync_ingest", Level::INFO)
        .with_target("clerk_sync_worker", Level::INFO);
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("clerk-sync"))
            .with_filter(traced)
    });
    let _ = tracing_subscriber::registry()
        .with(text.map(|l| l.with_filter(filter.clone())))
        .with(json.map(|l| l.with_filter(filter)))
        .with(otel)
        .try_init();
    Telemetry { provider }
}
