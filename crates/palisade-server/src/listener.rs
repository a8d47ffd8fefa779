//! The listener: accepts connections, does the TLS handshake (bounded in time), and serves
//! HTTP/1.1 through hyper with a cap on header count and size and a header read timeout against
//! slow clients. Graceful shutdown stops accepting and drains in-flight requests. Tests serve
//! through this same loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use palisade_api::client_addr::ServedOverTls;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The most header fields one request may carry (more: 431).
pub const MAX_HEADERS: usize = 64;
/// The most bytes of request line and headers hyper buffers (more: 431). hyper's floor is 8 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A TLS handshake that takes longer is abandoned.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown` completes. A
/// client that has not sent a request's whole header block within `header_read_timeout` is
/// disconnected (slowloris).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (router, acceptor, watcher) = (router.clone(), acceptor.clone(), graceful.watcher());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_connection(stream, peer, router, false, header_read_timeout, watcher).await,
                        Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, peer, router, true, header_read_timeout, watcher).await
                            }
                            Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake refused"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    tls: bool,
    header_read_timeout: Duration,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        if tls {
            request.extensions_mut().insert(ServedOverTls);
        }
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}
