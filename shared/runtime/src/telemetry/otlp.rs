//! Exporting spans to an OpenTelemetry collector over OTLP/HTTP (protobuf), so a trace that
//! crosses the queue hops — upstream publish, sender, provider callback, status worker — can be
//! followed in one place.
//!
//! The exporter is `opentelemetry-otlp`'s; only the HTTP transport is ours: the workspace's
//! `reqwest` client, with each export run on the process's Tokio runtime (the batch processor
//! calls the exporter from its own thread, which has no runtime of its own).

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};

/// The largest collector answer read back (its body only matters for partial-success notes).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Builds the span exporter. `endpoint` is the collector's base URL (`/v1/traces` is added) or
/// the full traces URL; `None` leaves it to the standard `OTEL_EXPORTER_OTLP_*` variables.
pub fn exporter(
    endpoint: Option<&str>,
) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let client = CollectorClient {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                opentelemetry_otlp::ExporterBuildError::InternalFailure(format!("HTTP client: {e}"))
            })?,
        runtime: tokio::runtime::Handle::try_current().ok(),
    };
    let mut builder = SpanExporter::builder().with_http().with_http_client(client);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(traces_url(endpoint));
    }
    builder.build()
}

/// `<base>/v1/traces`, unless the URL already names the traces path.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

#[derive(Debug)]
struct CollectorClient {
    http: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

#[async_trait::async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request: reqwest::Request = request.try_into()?;
        let send = post(self.http.clone(), request);
        match &self.runtime {
            Some(runtime) => runtime.spawn(send).await?,
            None => send.await,
        }
    }
}

async fn post(
    http: reqwest::Client,
    request: reqwest::Request,
) -> Result<Response<Bytes>, HttpError> {
    let mut answer = http.execute(request).await?;
    let status = answer.status();
    let headers = std::mem::take(answer.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let mut response = Response::builder().status(status).body(Bytes::from(body))?;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/v1/traces"),
            "https://otel.example/v1/traces"
        );
    }
}
