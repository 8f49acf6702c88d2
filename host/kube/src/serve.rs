//! The controller's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (liveness: the loop is
//! still turning) and `/readyz` (readiness: the caches are synced). The chart points its probes and
//! its ServiceMonitor here (`METRICS_PORT`, `HEALTH_PROBE_PORT`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the probes report, updated by the loop.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    /// Why this replica cannot do its job although its caches are synced (the leader's interruption
    /// queue is missing), for `/readyz`.
    problem: Mutex<Option<String>>,
    heartbeat: Mutex<Instant>,
    /// The loop is alive while it has turned within this long (it turns at least on every timer
    /// wake, so a longer silence means it is stuck).
    stall_after: Duration,
}

impl Health {
    pub fn new(stall_after: Duration) -> Health {
        Health {
            ready: AtomicBool::new(false),
            problem: Mutex::new(None),
            heartbeat: Mutex::new(Instant::now()),
            stall_after,
        }
    }

    /// The caches are synced and decisions can be made (a standby replica is ready too: it is
    /// healthy and waiting for the lease).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The loop turned.
    pub fn beat(&self) {
        *self
            .heartbeat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// Ready, or why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("caches not synced yet".into());
        }
        match &*self.problem.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(problem) => Err(problem.clone()),
            None => Ok(()),
        }
    }

    /// Sets (or, with None, clears) what keeps this replica from being ready.
    pub fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn is_live(&self) -> bool {
        self.heartbeat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .elapsed()
            < self.stall_after
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("accepting a connection on {addr}: {source}")]
    Accept {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Serves the endpoints on `listener` until `shutdown`. A connection that fails is logged and
/// dropped; only a failing listener ends the server.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted.map_err(|source| ServeError::Accept { addr: addr.clone(), source })?,
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(request.uri().path(), &metrics, &health);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics/health connection");
            }
        });
    }
}

fn respond(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => match metrics.encode() {
            Ok(text) => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding the metrics failed\n".to_string(),
            ),
        },
        "/healthz" if health.is_live() => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("the loop has not turned for {:?}\n", health.stall_after),
        ),
        "/readyz" => match health.readiness() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }

    #[tokio::test]
    async fn probes_follow_the_loop_and_metrics_are_scraped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(Duration::from_millis(300)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), health.clone(), async {
            stopped.await.ok();
        }));

        assert_eq!(
            get(addr, "/readyz").await.0,
            503,
            "not ready before the caches sync"
        );
        health.set_ready(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        assert_eq!(get(addr, "/healthz").await.0, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            get(addr, "/healthz").await.0,
            503,
            "a stuck loop fails liveness"
        );
        health.beat();
        assert_eq!(get(addr, "/healthz").await.0, 200);

        metrics.set_leader(true);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("kestrel_leader 1"), "{body}");
        assert!(body.contains("# TYPE kestrel_leader gauge"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
