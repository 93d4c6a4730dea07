//! A stand-in OTLP/HTTP receiver: collects the JSON trace exports the processes send.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
}

pub struct OtlpReceiver {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    task: tokio::task::JoinHandle<()>,
    /// When served over TLS: the front and the CA that signed its certificate.
    tls: Option<(super::tls::TlsFront, super::tls::TestCa)>,
}

fn service_of(resource: &Value) -> String {
    resource["attributes"]
        .as_array()
        .and_then(|attrs| attrs.iter().find(|a| a["key"] == "service.name"))
        .and_then(|a| a["value"]["stringValue"].as_str())
        .unwrap_or_default()
        .to_owned()
}

impl OtlpReceiver {
    pub async fn start() -> Result<Self> {
        let spans: Arc<Mutex<Vec<ExportedSpan>>> = Arc::default();
        let sink = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    if let Ok(export) = serde_json::from_slice::<Value>(&body) {
                        let mut out = sink.lock().expect("lock");
                        for rs in export["resourceSpans"].as_array().into_iter().flatten() {
                            let service = service_of(&rs["resource"]);
                            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                                for span in ss["spans"].as_array().into_iter().flatten() {
                                    let text =
                                        |k: &str| span[k].as_str().unwrap_or_default().to_owned();
                                    out.push(ExportedSpan {
                                        service: service.clone(),
                                        name: text("name"),
                                        trace_id: text("traceId"),
                                        span_id: text("spanId"),
                                        parent_span_id: text("parentSpanId"),
                                    });
                                }
                            }
                        }
                    }
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpReceiver {
            endpoint,
            spans,
            task,
            tls: None,
        })
    }

    /// The collector behind TLS, its certificate signed by a test CA the processes trust
    /// through `SSL_CERT_FILE`: the way a production collector is reached.
    pub async fn start_over_tls() -> Result<Self> {
        let mut receiver = Self::start().await?;
        let ca = super::tls::TestCa::new("clerk-sync test CA")?;
        let plain: std::net::SocketAddr =
            receiver.endpoint.trim_start_matches("http://").parse()?;
        let front = super::tls::TlsFront::start(ca.server_identity()?, plain).await?;
        receiver.endpoint = front.url();
        receiver.tls = Some((front, ca));
        Ok(receiver)
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().expect("lock").clone()
    }

    /// Environment for a process that should export its traces here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
        .into_iter()
        .chain(self.tls.as_ref().map(|(_, ca)| {
            (
                "SSL_CERT_FILE",
                ca.pem_file().to_string_lossy().into_owned(),
            )
        }))
        .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
