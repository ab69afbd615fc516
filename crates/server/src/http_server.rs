//! The HTTP server under the router: accepts client connections up to a limit and serves each with
//! hyper's HTTP/1, closing any connection that holds the server without using it.
//!
//! * **Header read timeout** (`http.header_read_timeout`, nginx's `client_header_timeout`, 60 s): a new
//!   connection must deliver its first request's header within it; a kept-alive one, once the first
//!   byte of its next request has arrived. Else it is closed without an answer (nginx does the same).
//! * **Keep-alive timeout** (`http.keepalive_timeout`, nginx's `keepalive_timeout`, 75 s): a connection
//!   with no request in flight and no byte of the next one is closed after it.
//! * **No timeout while a request is in flight**: from the moment its header has been read until its
//!   response body has ended (a sync prediction that runs for minutes, an SSE stream), nothing here
//!   closes the connection. The body's own wait between reads is bounded where it is read
//!   ([`crate::request::read_body`], `http.body_read_timeout`).
//! * **Connection limit** (`http.max_connections`, 512 as nginx's `worker_connections`, lowered to fit
//!   the open-file limit): at the limit, the connection idle the longest is closed for the new one,
//!   as nginx reuses idle keep-alive connections when it runs out; when every connection has a request
//!   in flight, the new one is answered `503` with `Retry-After: 1` and closed (envoy closes
//!   connections over its limit without an answer; the answer says why). Accepting goes on either
//!   way, so a health probe is never left in the kernel's backlog behind idle connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower_service::Service;

/// The default of `http.header_read_timeout` (nginx's `client_header_timeout`).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of `http.keepalive_timeout` (nginx's `keepalive_timeout`).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// The default of `http.max_connections` (nginx's `worker_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// File descriptors kept for everything but client connections (the worker's pipes and slot sockets,
/// spill and output files, webhook and upload connections, the log) when the connection limit is
/// fitted to the open-file limit.
pub const RESERVED_FDS: u64 = 48;

/// Connections over the limit being answered `503` at once; past this they are closed unanswered.
const REFUSING_AT_ONCE: usize = 16;

/// How long a connection over the limit may take to get its `503` before it is closed.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);

/// How long a new connection waits for the idle one it displaces to close.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How often a connection waiting for a place asks again for an idle one to give way.
const EVICTION_RETRY: Duration = Duration::from_millis(50);

/// How long connections may take to close once the shutdown drain is over (the predictions are done
/// by then: what is left is a response being written to a client that does not read it).
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// What bounds the server's connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The connection limit that fits `wanted` into an open-file limit of `nofile`: what is left after
/// [`RESERVED_FDS`] and the connections being refused, at least 1.
pub fn fit_connections(wanted: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else { return wanted };
    let room = nofile
        .saturating_sub(RESERVED_FDS)
        .saturating_sub(REFUSING_AT_ONCE as u64)
        .max(1);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// The process's soft open-file limit, if it has one.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the `rlimit` it is given, which lives across the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then stops accepting, asks
/// every connection to close once its request in flight is answered, and waits for them (at most
/// [`CLOSE_DEADLINE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let server = Arc::new(Server {
        app,
        limits,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        refusing: Arc::new(Semaphore::new(REFUSING_AT_ONCE)),
        connections: Mutex::default(),
        next_id: AtomicU64::new(0),
    });
    let (stop, stopped) = watch::channel(false);
    let tasks = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => match server.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    tasks.spawn(server.clone().connection(stream, permit, stopped.clone()));
                }
                Err(_) => {
                    let server = server.clone();
                    let stopped = stopped.clone();
                    let inner = tasks.clone();
                    tasks.spawn(async move {
                        match server.make_room().await {
                            Some(permit) => {
                                inner.spawn(server.connection(stream, permit, stopped));
                            }
                            None => server.refuse(stream),
                        }
                    });
                }
            },
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be closed.
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    tasks.close();
    if tokio::time::timeout(CLOSE_DEADLINE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "connections still open after the shutdown drain (a response no client reads); closing them"
        );
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

struct Server {
    app: Router,
    limits: ServerLimits,
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    /// Every open connection's activity, by connection number.
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

impl Server {
    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection that has waited the longest without a request in flight to close; false
    /// when every connection has one.
    fn evict_idle(&self) -> bool {
        let connections = self.connections();
        let oldest = connections
            .values()
            .filter(|a| !a.evicted.load(Ordering::Relaxed))
            .filter_map(|a| a.waiting_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, activity)) => {
                activity.evicted.store(true, Ordering::Relaxed);
                activity.give_way.notify_one();
                true
            }
            None => false,
        }
    }

    /// A place for a connection over the limit: asks an idle connection to give way and waits for its
    /// permit, up to [`EVICTION_WAIT`]. Many connections arriving at once all queue here, while the
    /// ones admitted before them have not yet registered as idle: so the eviction is retried every
    /// [`EVICTION_RETRY`] until a permit comes, and only when no connection is idle or giving way is
    /// the new one refused at once.
    async fn make_room(&self) -> Option<OwnedSemaphorePermit> {
        let deadline = Instant::now() + EVICTION_WAIT;
        loop {
            let asked = self.evict_idle() || self.eviction_pending();
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(EVICTION_RETRY);
            match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => return Some(permit),
                Ok(Err(_)) => return None,
                Err(_) if !asked || Instant::now() >= deadline => return None,
                Err(_) => {}
            }
        }
    }

    /// Some connection was asked to give way and has not closed yet, or holds its permit but has not
    /// registered yet (just admitted: it will be idle, and evictable, in a moment).
    fn eviction_pending(&self) -> bool {
        let connections = self.connections();
        connections.len() < self.limits.max_connections
            || connections
                .values()
                .any(|a| a.evicted.load(Ordering::Relaxed))
    }

    /// Answers a connection over the limit with `503` and closes it.
    fn refuse(&self, mut stream: TcpStream) {
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = self.limits.max_connections,
                "connection limit reached; closing a new connection unanswered"
            );
            return;
        };
        tracing::warn!(
            limit = self.limits.max_connections,
            "connection limit reached with a request in flight on every connection; answering 503"
        );
        let body = format!(
            "{{\"error\":\"the server holds its limit of {} connections, each with a request in flight (http.max_connections); retry later\"}}",
            self.limits.max_connections
        );
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
                stream.write_all(response.as_bytes()).await?;
                stream.shutdown().await?;
                // Read what the client sent, so closing does not reset the connection before it has
                // read the answer.
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
        });
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        _permit: OwnedSemaphorePermit,
        mut stopped: watch::Receiver<bool>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.connections().insert(id, activity.clone());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let service = {
            let activity = activity.clone();
            let app = self.app.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let guard = activity.begin();
                let mut app = app.clone();
                async move {
                    let response = match app.call(request.map(Body::new)).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    Ok::<_, Infallible>(response.map(|body| InFlight {
                        inner: body,
                        guard: Some(guard),
                    }))
                }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = *stopped.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        // The connection's timer is re-armed only when it fires, never per request: a request's
        // first byte, its header and its end change the activity without waking this task (three
        // wake-ups per request cost a fifth of the throughput of trivial predictions). Whatever
        // happens after the timer is armed sets a deadline at least the shorter timeout later, so
        // arming it for the current deadline or the shorter timeout from now, whichever comes first,
        // and re-reading the deadline when it fires, closes neither early nor late.
        let recheck = self
            .limits
            .header_read_timeout
            .min(self.limits.keepalive_timeout);
        loop {
            let soonest = Instant::now() + recheck;
            let at = match activity.deadline(&self.limits) {
                Some((at, _)) => at.min(soonest),
                None => soonest,
            };
            let expiry = tokio::time::sleep_until(at);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = expiry => {
                    // Still expired now (a request may have begun as the timer fired)?
                    if let Some((at, why)) = activity.deadline(&self.limits) {
                        if at <= Instant::now() {
                            tracing::debug!(reason = why, "closing a connection");
                            break;
                        }
                    }
                }
                () = activity.give_way.notified() => {
                    if activity.evicted.swap(false, Ordering::Relaxed) && activity.waiting_since().is_some() {
                        tracing::debug!("closing an idle connection for a new one (http.max_connections)");
                        break;
                    }
                }
                changed = stopped.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        self.connections().remove(&id);
    }
}

/// What one connection is doing, for its timers.
struct Activity {
    phase: Mutex<Phase>,
    /// Set while the connection waits for the first byte of its next request (reads check it cheaply).
    awaiting_byte: AtomicBool,
    /// Set when a new connection wants this one's place.
    evicted: AtomicBool,
    /// Woken when a new connection wants this one's place (the only wake-up of the connection task
    /// besides its own timer and its I/O).
    give_way: Notify,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in flight. `fresh`: no request yet on this connection.
    Waiting {
        since: Instant,
        first_byte: Option<Instant>,
        fresh: bool,
    },
    /// Requests whose header was read and whose response body has not ended.
    Serving { in_flight: usize },
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Waiting {
                since: Instant::now(),
                first_byte: None,
                fresh: true,
            }),
            awaiting_byte: AtomicBool::new(true),
            evicted: AtomicBool::new(false),
            give_way: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection is to be closed, and why; `None` while a request is in flight.
    fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, &'static str)> {
        match *self.phase() {
            Phase::Serving { .. } => None,
            Phase::Waiting {
                since, fresh: true, ..
            } => Some((
                since + limits.header_read_timeout,
                "no request header within http.header_read_timeout of connecting",
            )),
            Phase::Waiting {
                first_byte: Some(at),
                ..
            } => Some((
                at + limits.header_read_timeout,
                "no request header within http.header_read_timeout of its first byte",
            )),
            Phase::Waiting { since, .. } => Some((
                since + limits.keepalive_timeout,
                "idle for http.keepalive_timeout",
            )),
        }
    }

    /// When the connection began waiting for a request, if it has none in flight.
    fn waiting_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting { since, .. } => Some(since),
            Phase::Serving { .. } => None,
        }
    }

    fn on_bytes(&self) {
        if !self.awaiting_byte.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Phase::Waiting { first_byte, .. } = &mut *self.phase() {
            first_byte.get_or_insert_with(Instant::now);
        }
    }

    /// A request's header has been read: it is in flight until the guard is dropped.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        {
            let mut phase = self.phase();
            *phase = match *phase {
                Phase::Serving { in_flight } => Phase::Serving {
                    in_flight: in_flight + 1,
                },
                Phase::Waiting { .. } => Phase::Serving { in_flight: 1 },
            };
            self.awaiting_byte.store(false, Ordering::Relaxed);
        }
        RequestGuard(self.clone())
    }
}

/// Held from a request's header until its response body ends (or the request is dropped).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        {
            let mut phase = activity.phase();
            if let Phase::Serving { in_flight } = *phase {
                *phase = if in_flight > 1 {
                    Phase::Serving {
                        in_flight: in_flight - 1,
                    }
                } else {
                    activity.awaiting_byte.store(true, Ordering::Relaxed);
                    Phase::Waiting {
                        since: Instant::now(),
                        first_byte: None,
                        fresh: false,
                    }
                };
            }
        }
    }
}

/// A response body that keeps its request in flight until it has ended.
struct InFlight {
    inner: Body,
    guard: Option<RequestGuard>,
}

impl http_body::Body for InFlight {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, noting the first byte of each request that arrives while it waits.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_bytes();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        assert_eq!(fit_connections(512, None), 512);
        assert_eq!(fit_connections(512, Some(1024)), 512);
        assert_eq!(fit_connections(512, Some(96)), 96 - 48 - 16);
        assert_eq!(fit_connections(512, Some(10)), 1);
        assert_eq!(fit_connections(8, Some(96)), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_timed_only_while_no_request_is_in_flight() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 1,
        };
        let start = Instant::now();
        let activity = Arc::new(Activity::new());
        // New: the header must arrive within 60 s of connecting, bytes or not.
        assert_eq!(
            activity.deadline(&limits).map(|d| d.0),
            Some(start + limits.header_read_timeout)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.on_bytes();
        assert_eq!(
            activity.deadline(&limits).map(|d| d.0),
            Some(start + limits.header_read_timeout)
        );
        // In flight, for however long: no deadline.
        let guard = activity.begin();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(activity.deadline(&limits), None);
        assert_eq!(activity.waiting_since(), None);
        // Answered: idle for 75 s at most, then 60 s from the next request's first byte.
        drop(guard);
        let idle = Instant::now();
        assert_eq!(
            activity.deadline(&limits).map(|d| d.0),
            Some(idle + limits.keepalive_timeout)
        );
        assert_eq!(activity.waiting_since(), Some(idle));
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.on_bytes();
        assert_eq!(
            activity.deadline(&limits).map(|d| d.0),
            Some(idle + Duration::from_secs(30) + limits.header_read_timeout)
        );
        // Two in flight (pipelined): the first to end does not start the idle timer.
        let a = activity.begin();
        let b = activity.begin();
        drop(a);
        assert_eq!(activity.deadline(&limits), None);
        drop(b);
        assert!(activity.deadline(&limits).is_some());
    }

    #[tokio::test]
    async fn a_response_body_keeps_its_request_in_flight_until_it_ends() {
        use http_body::Body as _;
        let activity = Arc::new(Activity::new());
        let mut body = InFlight {
            inner: Body::from("hi"),
            guard: Some(activity.begin()),
        };
        assert_eq!(activity.waiting_since(), None);
        let mut body = Pin::new(&mut body);
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(frame.is_some_and(|f| f.is_ok()));
        let end = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(end.is_none());
        assert!(activity.waiting_since().is_some(), "ended: idle again");
    }
}
