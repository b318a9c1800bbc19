//! The HTTP server loop (hyper's HTTP/1.1 on tokio), built to hold up against clients that
//! misbehave: a request's headers must arrive within the header timeout (an idle keep-alive
//! connection waiting for its next request included), a request must be answered within the
//! request timeout (long polls and event streams excepted: they bound themselves), a
//! response the client stops reading is dropped after the same time, and at most
//! `max_connections` are open at once (beyond it a new connection is closed at once and
//! counted in `callverify_http_connections_refused_total`). On shutdown it stops accepting,
//! closes idle connections and lets the requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::Problem;

/// The server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers (`[api] header_timeout_s`).
    pub header_timeout: Duration,
    /// How long a request may take to be answered, its body read included, and how long a
    /// response may wait for the client to read it (`[api] request_timeout_s`).
    pub request_timeout: Duration,
    /// Connections open at once, at most (`[api] max_connections`).
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// The most a connection buffers of what the client sends (hyper's default is about 400
/// KiB): a request's headers must fit (else 431), so `max_connections` of them hold at most
/// this much each. Bodies are limited apart ([`crate::MAX_BODY`]).
const READ_BUFFER: usize = 64 * 1024;

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting and returns once the requests in flight are answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(READ_BUFFER)
        .max_buf_size(READ_BUFFER);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("callverify_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Stalling::new(stream, limits.request_timeout));
        let router = router.clone();
        let timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |req| answer(router.clone(), req, timeout));
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            metrics::gauge!("callverify_http_connections").increment(1.0);
            if let Err(e) = connection.await {
                if e.is_timeout() {
                    metrics::counter!("callverify_http_timeouts_total", "kind" => "header")
                        .increment(1);
                }
                debug!(error = %e, "HTTP connection ended");
            }
            metrics::gauge!("callverify_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One request through the router, within the request timeout unless it is long-lived.
async fn answer(
    router: Router,
    req: Request<Incoming>,
    timeout: Duration,
) -> Result<Response, Infallible> {
    let long = long_lived(req.method(), req.uri());
    let answered = router.oneshot(req.map(Body::new));
    if long {
        return answered.await;
    }
    match tokio::time::timeout(timeout, answered).await {
        Ok(r) => r,
        Err(_) => {
            metrics::counter!("callverify_http_timeouts_total", "kind" => "request").increment(1);
            Ok(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-timeout",
                "The request took too long",
                format!(
                    "the request was not read and answered within {} s",
                    timeout.as_secs_f32()
                ),
            )
            .into_response())
        }
    }
}

/// A long poll (`GET /v1/challenges/{id}?wait=N`, N > 0) or an event stream (`GET
/// /v1/challenges/{id}/events`): their handlers bound them (`max_wait`, the challenge's
/// life), so the request timeout does not. Misreading one only changes which bound applies.
fn long_lived(method: &Method, uri: &axum::http::Uri) -> bool {
    if method != Method::GET {
        return false;
    }
    let Some(rest) = uri.path().strip_prefix("/v1/challenges/") else {
        return false;
    };
    match rest.split_once('/') {
        Some((id, "events")) => !id.is_empty(),
        Some(_) => false,
        None => uri.query().is_some_and(|q| {
            q.split('&').any(|kv| {
                kv.strip_prefix("wait=")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        }),
    }
}

/// A connection whose writes fail once the client has read nothing for `limit`: a response
/// (an event stream included) the client does not read does not hold the connection open.
struct Stalling {
    io: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalling {
    fn new(io: TcpStream, limit: Duration) -> Stalling {
        Stalling {
            io,
            limit,
            stalled: None,
        }
    }

    /// After a write that could not proceed: pending, or an error once that has lasted.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let since = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match since.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_polls_and_event_streams_are_told_apart() {
        let long = |m: Method, u: &str| long_lived(&m, &u.parse().unwrap());
        assert!(long(Method::GET, "/v1/challenges/ch_1?wait=25"));
        assert!(long(Method::GET, "/v1/challenges/ch_1?x=1&wait=1"));
        assert!(long(Method::GET, "/v1/challenges/ch_1/events"));
        assert!(!long(Method::GET, "/v1/challenges/ch_1"));
        assert!(!long(Method::GET, "/v1/challenges/ch_1?wait=0"));
        assert!(!long(Method::GET, "/v1/challenges/ch_1?wait=soon"));
        assert!(!long(Method::DELETE, "/v1/challenges/ch_1?wait=5"));
        assert!(!long(Method::POST, "/v1/challenges"));
        assert!(!long(Method::GET, "/v1/challenges//events"));
        assert!(!long(Method::GET, "/v1/calls?wait=5"));
        assert!(!long(Method::GET, "/v1/challenges/ch_1/other"));
    }
}
