//! One listener's accept loop and the life of each connection on it: admission, optional TLS
//! handshake, HTTP/1.1 with a header-read timeout that also bounds keep-alive
//! idleness, WebSocket upgrades, and a close that never waits past the shutdown bound.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admission::{Admission, Admit, BusyGuard, ConnHandle};
use crate::metrics::Metrics;

/// Most header lines hyper itself accepts: twice the top of `server.max_header_count`'s range,
/// so the relay's own check (with its JSON answer) sees every request a configuration can
/// refuse; beyond this, hyper's bare `431` bounds what one request may cost.
const HYPER_MAX_HEADERS: usize = 2048;

/// How long a connection served in overflow mode may take to send its one request.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How a listener's connections are served.
#[derive(Clone)]
pub(crate) struct ConnOptions {
    /// Time allowed for a request's header, counted from the connection's start or from the
    /// end of its previous response (so it is also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// TLS, when the listener serves it.
    pub tls: Option<TlsAcceptor>,
    /// Where refusals and timeouts are counted.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ConnOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnOptions")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// When a listener stops: `stop_accepting` ends the accept loop; on `drain` connections finish
/// their current request and close; on `force` every connection closes at once (the shutdown
/// bound).
#[derive(Debug, Clone)]
pub(crate) struct Stops {
    pub stop_accepting: CancellationToken,
    pub drain: CancellationToken,
    pub force: CancellationToken,
}

/// Accepts connections on `listener` until `stops.stop_accepting`, serving each with `app` on
/// a task of `tracker`. A connection also ends when its admission ticket is closed (evicted).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    admission: Arc<Admission>,
    options: ConnOptions,
    stops: Stops,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stops.stop_accepting.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors or a similar transient failure: back off briefly
                // instead of spinning; the budget keeps this rare.
                tracing::warn!(error = %e, "Accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
        }
        match admission.admit(peer.ip()) {
            Admit::Refused => drop(stream),
            Admit::Full(ticket) => {
                // One task per admitted connection: the admission budget bounds them.
                let app = app.clone();
                let options = options.clone();
                let stops = stops.clone();
                tracker.spawn(async move {
                    let evicted = ticket.closed();
                    let handle = ticket.handle();
                    serve_connection(stream, peer, app, Some(handle), &options, &evicted, &stops)
                        .await;
                    drop(ticket);
                });
            }
            Admit::Overflow(ticket) => {
                let options = ConnOptions {
                    header_read_timeout: OVERFLOW_HEADER_TIMEOUT,
                    ..options.clone()
                };
                let app = overflow_app(app.clone());
                let stops = stops.clone();
                tracker.spawn(async move {
                    let never = CancellationToken::new();
                    serve_connection(stream, peer, app, None, &options, &never, &stops).await;
                    drop(ticket);
                });
            }
        }
    }
}

/// The app as seen by a connection beyond the budget: health answers, everything else is
/// `503` with `Retry-After`; the connection closes after the response.
fn overflow_app(app: Router) -> Router {
    Router::new().fallback(move |request: Request<Body>| {
        let app = app.clone();
        async move {
            let path = request.uri().path();
            let mut response = if path == "/healthz" || path == "/readyz" {
                app.oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {})
            } else {
                crate::http::error::ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many connections; retry shortly",
                )
                .retry_after(1)
                .into_response()
            };
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    })
}

/// Serves one connection until it ends, is `evicted`, or `stops` says so.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    handle: Option<ConnHandle>,
    options: &ConnOptions,
    evicted: &CancellationToken,
    stops: &Stops,
) {
    match &options.tls {
        None => serve_io(stream, peer, app, handle, options, evicted, stops).await,
        Some(acceptor) => {
            // The handshake counts against the header timeout: a client that stalls it is
            // closed like one that stalls its header.
            let handshake =
                tokio::time::timeout(options.header_read_timeout, acceptor.accept(stream));
            let tls = tokio::select! {
                tls = handshake => tls,
                _ = evicted.cancelled() => return,
                _ = stops.force.cancelled() => return,
            };
            match tls {
                Ok(Ok(tls)) => serve_io(tls, peer, app, handle, options, evicted, stops).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => {
                    options.metrics.inc(
                        "webhook_relay_connections_closed_total",
                        &[("reason", "header_timeout")],
                    );
                }
            }
        }
    }
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    handle: Option<ConnHandle>,
    options: &ConnOptions,
    evicted: &CancellationToken,
    stops: &Stops,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let busy = handle.as_ref().map(ConnHandle::begin_request);
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(handle) = &handle {
            request.extensions_mut().insert(handle.clone());
        }
        let app = app.clone();
        async move {
            let response = app
                .oneshot(request.map(Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
        }
    });
    // HTTP/1.1 only: connectors need it for WebSocket upgrades, and serving h2c as well would
    // mean reading the first bytes to tell the two apart, a wait no timeout of hyper's bounds.
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = evicted.cancelled() => None,
        _ = stops.force.cancelled() => None,
        _ = stops.drain.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = evicted.cancelled() => None,
                _ = stops.force.cancelled() => None,
            }
        }
    };
    if let Some(Err(e)) = ended {
        if e.is_timeout() {
            options.metrics.inc(
                "webhook_relay_connections_closed_total",
                &[("reason", "header_timeout")],
            );
        } else {
            tracing::debug!(%peer, error = %e, "Connection ended with an error");
        }
    }
}

/// A response body that keeps its connection marked busy until it has been sent or dropped.
struct Tracked {
    body: Body,
    _busy: Option<BusyGuard>,
}

impl HttpBody for Tracked {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
