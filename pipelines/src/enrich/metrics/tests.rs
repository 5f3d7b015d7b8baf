//! Rendering and serving the enrich metrics.

use super::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::metrics_http::{OPENMETRICS, accept_loop};

#[test]
fn renders_counters_histograms_and_lag() {
    let metrics = Metrics::default();
    metrics.messages_in.inc_by(3);
    metrics.scoring_seconds.observe(0.02);
    metrics.scoring_seconds.observe(2.0);
    metrics.set_lag("in", 1, 42);
    let text = metrics.render();
    assert!(text.contains("crossflow_messages_in_total 3\n"), "{text}");
    // The histogram under its name and its deprecated alias.
    for name in [
        "crossflow_batch_scoring_seconds",
        "crossflow_inference_seconds",
    ] {
        for (bound, count) in [("0.025", 1), ("+Inf", 2)] {
            let line = format!("{name}_bucket{{le=\"{bound}\"}} {count}\n");
            assert!(text.contains(&line), "{line}in\n{text}");
        }
    }
    // The engine's counters, from its collector (no model here: zeros).
    for line in [
        "crossflow_cache_hit_ratio 0.0\n",
        "crossflow_queue_depth 0\n",
        "crossflow_queue_wait_seconds_total 0.0\n",
        "crossflow_merged_batches_total 0\n",
        "crossflow_queue_full_waits_total 0\n",
        "crossflow_truncated_pairs_total 0\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(
        text.contains("crossflow_consumer_lag{topic=\"in\",partition=\"1\"} 42\n"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(metrics.total_lag(), 42);
}

#[test]
fn a_revoked_partition_leaves_no_lag_gauge() {
    let metrics = Metrics::default();
    metrics.set_lag("in", 0, 5);
    metrics.set_lag("in", 1, 7);
    metrics.remove_lag("in", 1);
    let text = metrics.render();
    assert!(text.contains("partition=\"0\"} 5"), "{text}");
    assert!(!text.contains("partition=\"1\""), "{text}");
    assert_eq!(metrics.total_lag(), 5);
}

async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn a_failed_accept_does_not_stop_the_endpoint() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::default());
    metrics.messages_out.inc_by(7);
    let listener = Arc::new(listener);
    let failures = Arc::new(AtomicU64::new(0));
    let accept = {
        let failures = Arc::clone(&failures);
        move || {
            let listener = Arc::clone(&listener);
            let failures = Arc::clone(&failures);
            async move {
                let (stream, _) = listener.accept().await?;
                // Every other accepted connection fails as an accept can
                // (EMFILE): the stream is dropped and an error returned.
                if failures
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .is_multiple_of(2)
                {
                    drop(stream);
                    return Err(std::io::Error::from_raw_os_error(24));
                }
                Ok(stream)
            }
        }
    };
    let server = tokio::spawn(accept_loop(accept, metrics));
    let _refused = TcpStream::connect(addr).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), scrape(addr))
        .await
        .expect("the endpoint answers after a failed accept");
    assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
    assert!(response.contains(OPENMETRICS), "{response}");
    assert!(
        response.contains("crossflow_messages_out_total 7\n"),
        "{response}"
    );
    server.abort();
}

#[tokio::test]
async fn a_flood_of_slow_clients_neither_stops_scrapes_nor_holds_descriptors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::default());
    metrics.messages_out.inc_by(3);
    let server = tokio::spawn(crate::metrics_http::serve_on(listener, metrics));
    // 450 clients that send half a request and wait.
    let mut slow = Vec::new();
    for _ in 0..450 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let response = tokio::time::timeout(Duration::from_secs(10), scrape(addr))
        .await
        .expect("a scrape is answered during the flood");
    assert!(
        response.contains("crossflow_messages_out_total 3\n"),
        "{response}"
    );
    // The server closed all but the newest MAX_CONNECTIONS slow clients.
    let mut closed = 0;
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(5), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= slow.len() - crate::metrics_http::MAX_CONNECTIONS,
        "{closed} of {} closed",
        slow.len()
    );
    server.abort();
}
