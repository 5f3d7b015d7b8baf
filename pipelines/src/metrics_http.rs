//! Serving metrics in the OpenMetrics text format over HTTP (hyper), for
//! `crossflow enrich`, `crossflow executor` and `crossflow scheduler`
//! (`--metrics-addr`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Content type of the OpenMetrics text format.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Pause after a failed `accept` (e.g. too many open files) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Metrics that can render themselves in the OpenMetrics text format.
pub trait Exposition: Send + Sync + 'static {
    /// The text exposition, read at each scrape.
    fn render(&self) -> String;
}

impl Exposition for crossflow_cluster::ExecutorMetrics {
    fn render(&self) -> String {
        crossflow_cluster::ExecutorMetrics::render(self)
    }
}

impl Exposition for crossflow_cluster::SchedulerMetrics {
    fn render(&self) -> String {
        crossflow_cluster::SchedulerMetrics::render(self)
    }
}

/// Serves the metrics at `addr` (any path) until the task is dropped. A failed
/// `accept` is logged (at most once per 10 s) and the endpoint goes on; a
/// client has 5 s to send its headers, one request per connection, and at
/// most [`MAX_CONNECTIONS`] are open (the oldest is closed for a new one).
pub async fn serve<M: Exposition>(addr: SocketAddr, metrics: Arc<M>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve_on(listener, metrics).await;
    Ok(())
}

/// Serves the metrics on a bound `listener` until the task is dropped.
pub async fn serve_on<M: Exposition>(listener: TcpListener, metrics: Arc<M>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    accept_loop(
        || async { listener.accept().await.map(|(stream, _)| stream) },
        metrics,
    )
    .await;
}

pub(crate) async fn accept_loop<M, A, F>(mut accept: A, metrics: Arc<M>)
where
    M: Exposition,
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    let connections = Arc::new(Connections::default());
    let mut failures = FailureLog::default();
    loop {
        match accept().await {
            Ok(stream) => {
                let respond = respond(stream, Arc::clone(&metrics));
                connections.spawn(respond);
            }
            Err(error) => {
                failures.record(&error);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Connections served at once at most: above it, the oldest is closed, so
/// that idle or slow clients cannot hold the process's file descriptors
/// and a new scrape always gets in.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a connection may last in all (a scrape takes milliseconds).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The open connections' tasks, oldest first.
#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, AbortHandle>>,
    next: AtomicU64,
}

impl Connections {
    /// Serves a connection on its own task, closing the oldest one when
    /// there are more than [`MAX_CONNECTIONS`].
    fn spawn(self: &Arc<Self>, serve: impl Future<Output = ()> + Send + 'static) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connections = Arc::clone(self);
        // The task removes itself only after it was added (the lock is held).
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let task = tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, serve).await;
            connections.remove(id);
        });
        open.insert(id, task.abort_handle());
        if open.len() > MAX_CONNECTIONS
            && let Some((_, oldest)) = open.pop_first()
        {
            oldest.abort();
        }
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Logs failed accepts at most once per [`FAILURE_LOG_INTERVAL`], with the
/// number left out since the last line.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    left_out: u64,
}

/// Shortest time between two "accept failed" log lines.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl FailureLog {
    fn record(&mut self, error: &std::io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < FAILURE_LOG_INTERVAL)
        {
            self.left_out += 1;
            return;
        }
        tracing::warn!(%error, left_out = self.left_out,
            "metrics endpoint: accept failed; going on");
        self.last = Some(now);
        self.left_out = 0;
    }
}

async fn respond<M: Exposition>(stream: TcpStream, metrics: Arc<M>) {
    let service = service_fn(move |_: Request<Incoming>| {
        let body = metrics.render();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(CONTENT_TYPE, OPENMETRICS)
                    .body(Full::new(Bytes::from(body)))
                    .expect("a static header is valid"),
            )
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "metrics connection ended with an error");
    }
}
