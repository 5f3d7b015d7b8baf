//! Serving metrics in the OpenMetrics text format over HTTP (hyper), for
//! `crossflow enrich --metrics-addr` and `crossflow executor --metrics-addr`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

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

/// Serves the metrics at `addr` (any path) until the task is dropped. A failed
/// `accept` is logged and the endpoint goes on.
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
    loop {
        match accept().await {
            Ok(stream) => {
                tokio::spawn(respond(stream, Arc::clone(&metrics)));
            }
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed; going on");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
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
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "metrics connection ended with an error");
    }
}
