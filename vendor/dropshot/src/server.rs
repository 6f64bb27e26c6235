// Copyright 2026 Oxide Computer Company

//! Generic server-wide state and facilities

use super::ProbeRegistration;
use super::api_description::ApiDescription;
use super::body::Body;
use super::compression::add_vary_header;
use super::compression::apply_gzip_compression;
use super::compression::is_compressible_content_type;
use super::compression::should_compress_response;
use super::config::{CompressionConfig, ConfigDropshot, ConfigTls};
#[cfg(feature = "usdt-probes")]
use super::dtrace::probes;
use super::handler::HandlerError;
use super::handler::RequestContext;
use super::http_util::REQUEST_ID_NAME;
use super::router::HttpRouter;
use super::versioning::VersionPolicy;

use async_stream::stream;
use debug_ignore::DebugIgnore;
use futures::future::{
    BoxFuture, FusedFuture, FutureExt, Shared, TryFutureExt,
};
use futures::lock::Mutex;
use futures::stream::{Stream, StreamExt};
use hyper::Request;
use hyper::Response;
use hyper::service::Service;
use rustls;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use scopeguard::{ScopeGuard, guard};
use std::convert::TryFrom;
use std::future::Future;
use std::mem;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::panic;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use uuid::Uuid;
use waitgroup::WaitGroup;

use crate::RequestInfo;
use crate::config::HandlerTaskMode;
use slog::Logger;
use thiserror::Error;

// TODO Remove when we can remove `HttpServerStarter`
type GenericError = Box<dyn std::error::Error + Send + Sync>;

/// Endpoint-accessible context associated with a server.
///
/// Automatically implemented for all Send + Sync types.
pub trait ServerContext: Send + Sync + 'static {}

impl<T: 'static> ServerContext for T where T: Send + Sync {}

/// Stores shared state used by the Dropshot server.
#[derive(Debug)]
pub struct DropshotState<C: ServerContext> {
    /// caller-specific state
    pub private: C,
    /// static server configuration parameters
    pub config: ServerConfig,
    /// request router
    pub router: HttpRouter<C>,
    /// server-wide log handle
    pub log: Logger,
    /// bound local address for the server.
    pub local_addr: SocketAddr,
    /// Identifies how to accept TLS connections
    pub(crate) tls_acceptor: Option<Arc<Mutex<TlsAcceptor>>>,
    /// Worker for the handler_waitgroup associated with this server, allowing
    /// graceful shutdown to wait for all handlers to complete.
    pub(crate) handler_waitgroup_worker: DebugIgnore<waitgroup::Worker>,
    /// specifies how incoming requests are mapped to handlers based on versions
    pub(crate) version_policy: VersionPolicy,
    // TAPROOM PATCH: see `ResponseHook`.
    pub(crate) response_hook: DebugIgnore<Option<Arc<dyn ResponseHook>>>,
    // TAPROOM PATCH: see `RequestHook`.
    pub(crate) request_hook: DebugIgnore<Option<Arc<dyn RequestHook>>>,
    // TAPROOM PATCH: see `ConnectionLimits`.
    pub(crate) connection_limits: ConnectionLimits,
}

// TAPROOM PATCH: bounds on what one client connection may hold, so that slow or idle
// clients (slowloris) cannot keep connections and handlers forever.
/// Limits on client connections, set with [`ServerBuilder::connection_limits`]. `None`
/// leaves a limit off (hyper's own 30 s header timeout still applies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client has to send a request's head. On a new connection it also bounds
    /// the wait for the first request (a client that sends nothing, or part of an
    /// HTTP/2 preface); on a kept-alive HTTP/1 connection it bounds the idle time
    /// before the next request. Past it the connection is closed.
    pub header_read_timeout: Option<std::time::Duration>,
    /// Time a client has to send a whole request body once its head has arrived; past
    /// it reading the body fails with [`crate::BodyReadTimeout`] (408).
    pub body_read_timeout: Option<std::time::Duration>,
    /// Connections served at once; one more is answered 503 (a problem) and closed.
    pub max_connections: Option<usize>,
}

// TAPROOM PATCH: what a connection over `ConnectionLimits::max_connections` gets: a
// 503 problem, written without reading a request, then the connection is closed.
fn refuse_connection(
    mut sock: TcpStream,
    refusals: &Arc<tokio::sync::Semaphore>,
    log: &Logger,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    warn!(log, "too many open connections; refusing one");
    // Answering costs a task for up to a second: a bounded number at once, the rest
    // are just closed.
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let request_id = generate_request_id();
        let body = format!(
            "{{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"The server has too many open connections; retry shortly.\",\"request_id\":\"{request_id}\"}}"
        );
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nx-request-id: {request_id}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            sock.write_all(response.as_bytes()).await?;
            sock.shutdown().await?;
            // Take what the client sent before closing: closing with unread data
            // would reset the connection, and the client could lose the answer.
            let mut sink = [0u8; 1024];
            while sock.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
    });
}

// TAPROOM PATCH: serves one connection within `ConnectionLimits`: `permit` (a slot under
// `max_connections`) is held until it ends, and it is dropped (closed) if no request
// has started within `first_request_timeout`.
async fn serve_limited<F: Future>(
    connection: F,
    started: Arc<std::sync::atomic::AtomicBool>,
    first_request_timeout: Option<std::time::Duration>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let _permit = permit;
    let Some(timeout) = first_request_timeout else {
        connection.await;
        return;
    };
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = &mut connection => return,
        () = tokio::time::sleep(timeout) => {}
    }
    if started.load(std::sync::atomic::Ordering::Acquire) {
        connection.await;
    }
}

// TAPROOM PATCH: hyper's HTTP/1 header-read timer, one per connection. hyper asks its
// timer for a new sleep whenever it starts reading a request head and drops it once the
// head is in; with `TokioTimer` that is an entry put into tokio's timer wheel and taken
// out again for every request on a kept-alive connection. Here a head's deadline is
// only a time, checked when hyper polls it, and the connection keeps one tokio sleep:
// moved when a deadline is earlier than the sleep's, and when the sleep fires before the
// deadline of the head now awaited (on a busy connection, once per timeout). Every
// deadline is kept as exactly as with `TokioTimer`. A connection is polled by one task,
// so the sleep's one waker is the right one.
#[derive(Clone, Default)]
struct HeadTimer(Arc<std::sync::Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>);

struct HeadDeadline {
    at: tokio::time::Instant,
    timer: HeadTimer,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(
        &self,
        duration: std::time::Duration,
    ) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    fn sleep_until(
        &self,
        deadline: std::time::Instant,
    ) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadDeadline { at: deadline.into(), timer: self.clone() })
    }
}

impl hyper::rt::Sleep for HeadDeadline {}

impl Future for HeadDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        if tokio::time::Instant::now() >= at {
            return Poll::Ready(());
        }
        let mut shared = self
            .timer
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sleep = shared
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() > at {
            sleep.as_mut().reset(at);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            // It fired for an earlier deadline: wait for this one.
            sleep.as_mut().reset(at);
            if sleep.as_mut().poll(cx).is_ready() {
                // Only when `at` is within the timer's resolution: look again soon.
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }
}

// TAPROOM PATCH: a hook that sees every response before it is sent, including the
// ones dropshot renders itself (router 404/405, extractor errors), so a server can
// render errors in its own format (e.g. RFC 9457 problems) and add headers (CORS).
/// What a [`ResponseHook`] knows about the request a response answers.
pub struct ResponseContext<'a> {
    /// The request id (from a valid `x-request-id` request header, else generated).
    pub request_id: &'a str,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub request_headers: &'a http::HeaderMap,
    /// The operation the request was routed to, if routing succeeded.
    pub operation_id: Option<&'a str>,
    /// Set when the response renders an `HttpError` (dropshot's own errors, and
    /// handlers whose error type is `HttpError`).
    pub error: Option<&'a crate::HttpError>,
}

/// Rewrites responses just before they are sent; installed with
/// [`ServerBuilder::response_hook`].
pub trait ResponseHook: Send + Sync + 'static {
    /// The request headers `on_response` looks at; `None` (the default): all of them.
    /// Only these are kept for it, so a request does not pay for a copy of every header.
    fn request_headers(&self) -> Option<&[http::HeaderName]> {
        None
    }
    fn on_response(
        &self,
        context: &ResponseContext<'_>,
        response: Response<Body>,
    ) -> Response<Body>;
}

// TAPROOM PATCH: a hook that sees every request from its arrival to its end, so a
// server can measure requests (counts, latency, in flight) and trace them (a span per
// request whose ids go into every log line and follow the handler's calls).
/// What a [`RequestHook`] knows about a request as it arrives (before routing).
pub struct RequestStart<'a> {
    pub request_id: &'a str,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub request_headers: &'a http::HeaderMap,
}

/// Starts a [`RequestScope`] for every request; installed with
/// [`ServerBuilder::request_hook`].
pub trait RequestHook: Send + Sync + 'static {
    fn start(&self, request: &RequestStart<'_>) -> Box<dyn RequestScope>;
}

/// One request, from its arrival to its end.
pub trait RequestScope: Send + Sync + 'static {
    /// Keys of the scope's own for the request's logger (which has the request id,
    /// method and URI), so that every log line of the request carries them, the
    /// handler's included. They go into that same logger: a child logger of their own
    /// would cost an allocation per request and a step in every line.
    fn log_keys(&self) -> Box<dyn slog::SendSyncRefUnwindSafeKV> {
        Box::new(())
    }
    /// Runs the routed handler's task when it is spawned (`Detached`, and the
    /// methods that may write in `DetachedUnlessSafe`).
    fn run(
        &self,
        _operation_id: &str,
        task: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        task
    }
    /// Makes one poll of the routed handler when it is awaited on the connection's
    /// task (`CancelOnDisconnect`, and the safe methods in `DetachedUnlessSafe`):
    /// what `run` does for a spawned task, around each poll, so that such a request
    /// needs no box and no channel. A scope that implements one implements both.
    fn enter(&self, poll: &mut dyn FnMut()) {
        poll()
    }
    /// The request ended: `status` is what was sent (499 when the client went away
    /// first), `operation_id` the route's, if routing found one.
    fn finish(
        self: Box<Self>,
        operation_id: Option<&str>,
        status: u16,
        latency: std::time::Duration,
    );
}

// TAPROOM PATCH: accept the caller's request id when it is a sane token, so one id
// follows a request across services; otherwise make one.
fn request_id_from(request: &Request<hyper::body::Incoming>) -> Option<String> {
    let value = request.headers().get(REQUEST_ID_NAME)?.to_str().ok()?;
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    valid.then(|| value.to_string())
}

impl<C: ServerContext> DropshotState<C> {
    pub fn using_tls(&self) -> bool {
        self.tls_acceptor.is_some()
    }
}

/// Stores static configuration associated with the server
/// TODO-cleanup merge with ConfigDropshot
#[derive(Debug)]
pub struct ServerConfig {
    /// maximum allowed size of a request body
    pub default_request_body_max_bytes: usize,
    /// maximum size of any page of results
    pub page_max_nitems: NonZeroU32,
    /// default size for a page of results
    pub page_default_nitems: NonZeroU32,
    /// Default behavior for HTTP handler functions with respect to clients
    /// disconnecting early.
    pub default_handler_task_mode: HandlerTaskMode,
    /// A list of header names to include as extra properties in the log
    /// messages emitted by the per-request logger.  Each header will, if
    /// present, be included in the output with a "hdr_"-prefixed property name
    /// in lower case that has all hyphens replaced with underscores; e.g.,
    /// "X-Forwarded-For" will be included as "hdr_x_forwarded_for".  No attempt
    /// is made to deal with headers that appear multiple times in a single
    /// request.
    pub log_headers: Vec<String>,
    /// Configuration for response compression.
    pub compression: CompressionConfig,
}

/// See [`ServerBuilder`] instead.
// It would be nice to remove this structure altogether once we've got
// confidence that no consumers actually need to distinguish between the
// configuration and start steps.
pub struct HttpServerStarter<C: ServerContext> {
    app_state: Arc<DropshotState<C>>,
    local_addr: SocketAddr,
    handler_waitgroup: WaitGroup,
    http_acceptor: HttpAcceptor,
    tls_acceptor: Option<Arc<Mutex<TlsAcceptor>>>,
}

impl<C: ServerContext> HttpServerStarter<C> {
    /// Make an `HttpServerStarter` to start an `HttpServer`
    ///
    /// This function exists for backwards compatibility.  You should use
    /// [`ServerBuilder`] instead.
    pub fn new(
        config: &ConfigDropshot,
        api: ApiDescription<C>,
        private: C,
        log: &Logger,
    ) -> Result<HttpServerStarter<C>, GenericError> {
        HttpServerStarter::new_with_tls(config, api, private, log, None)
    }

    /// Make an `HttpServerStarter` to start an `HttpServer`
    ///
    /// This function exists for backwards compatibility.  You should use
    /// [`ServerBuilder`] instead.
    pub fn new_with_tls(
        config: &ConfigDropshot,
        api: ApiDescription<C>,
        private: C,
        log: &Logger,
        tls: Option<ConfigTls>,
    ) -> Result<HttpServerStarter<C>, GenericError> {
        ServerBuilder::new(api, private, log.clone())
            .config(config.clone())
            .tls(tls)
            .build_starter()
            .map_err(|e| Box::new(e) as GenericError)
    }

    fn new_internal(
        config: &ConfigDropshot,
        api: ApiDescription<C>,
        private: C,
        log: &Logger,
        tls: Option<ConfigTls>,
        version_policy: VersionPolicy,
        response_hook: Option<Arc<dyn ResponseHook>>,
        request_hook: Option<Arc<dyn RequestHook>>,
        connection_limits: ConnectionLimits,
    ) -> Result<HttpServerStarter<C>, BuildError> {
        let tcp = {
            let std_listener = std::net::TcpListener::bind(
                &config.bind_address,
            )
            .map_err(|e| BuildError::bind_error(e, config.bind_address))?;
            std_listener.set_nonblocking(true).map_err(|e| {
                BuildError::generic_system(e, "setting non-blocking")
            })?;
            // We use `from_std` instead of just calling `bind` here directly
            // to avoid invoking an async function.
            TcpListener::from_std(std_listener).map_err(|e| {
                BuildError::generic_system(e, "creating TCP listener")
            })?
        };

        let local_addr = tcp.local_addr().map_err(|e| {
            BuildError::generic_system(e, "getting local TCP address")
        })?;

        // TAPROOM PATCH: formatted once here, not on every log line of every request.
        let log = log.new(o!("local_addr" => local_addr.to_string()));

        let server_config = ServerConfig {
            // We start aggressively to ensure test coverage.
            default_request_body_max_bytes: config
                .default_request_body_max_bytes,
            page_max_nitems: NonZeroU32::new(10000).unwrap(),
            page_default_nitems: NonZeroU32::new(100).unwrap(),
            default_handler_task_mode: config.default_handler_task_mode,
            log_headers: config.log_headers.clone(),
            compression: config.compression,
        };

        let tls_acceptor = tls
            .as_ref()
            .map(|tls| {
                Ok(Arc::new(Mutex::new(TlsAcceptor::from(Arc::new(
                    rustls::ServerConfig::try_from(tls)?,
                )))))
            })
            .transpose()?;
        let handler_waitgroup = WaitGroup::new();

        let router = api.into_router();
        if let VersionPolicy::Unversioned = version_policy {
            if router.has_versioned_routes() {
                return Err(BuildError::UnversionedServerHasVersionedRoutes);
            }
        }

        let app_state = Arc::new(DropshotState {
            private,
            config: server_config,
            router,
            log: log.clone(),
            local_addr,
            tls_acceptor: tls_acceptor.clone(),
            handler_waitgroup_worker: DebugIgnore(handler_waitgroup.worker()),
            version_policy,
            response_hook: DebugIgnore(response_hook),
            request_hook: DebugIgnore(request_hook),
            connection_limits,
        });

        for (path, method, endpoint) in app_state.router.endpoints(None) {
            debug!(&log, "registered endpoint";
                "method" => &method,
                "path" => &path,
                "versions" => &endpoint.versions,
            );
        }

        let http_acceptor = HttpAcceptor { tcp, log: log.clone() };

        Ok(HttpServerStarter {
            app_state,
            local_addr,
            handler_waitgroup,
            http_acceptor,
            tls_acceptor,
        })
    }

    pub fn start(self) -> HttpServer<C> {
        let HttpServerStarter {
            app_state,
            local_addr,
            handler_waitgroup,
            tls_acceptor,
            http_acceptor,
        } = self;

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // TAPROOM PATCH: the accept loop and everything it drives (hyper's HTTP/1 and
        // HTTP/2 connections) see the server only as `dyn HandleRequest`, so they are
        // compiled once, not once per context type (see `HandleRequest`).
        let make_service = ServerConnectionHandler::new(
            Arc::clone(&app_state) as Arc<dyn HandleRequest>
        );
        let log = &app_state.log;
        let join_handle = tokio::spawn(accept_connections(
            make_service,
            app_state.connection_limits.clone(),
            log.clone(),
            tls_acceptor,
            http_acceptor,
            rx,
        ));

        info!(log, "listening");

        let join_handle = async move {
            // After the server shuts down, we also want to wait for any
            // detached handler futures to complete.
            () = join_handle
                .await
                .map_err(|e| format!("server stopped: {e}"))?;
            () = handler_waitgroup.wait().await;
            Ok(())
        };

        #[cfg(feature = "usdt-probes")]
        let probe_registration = match usdt::register_probes() {
            Ok(_) => {
                debug!(&log, "successfully registered DTrace USDT probes");
                ProbeRegistration::Succeeded
            }
            Err(e) => {
                let msg = e.to_string();
                error!(&log, "failed to register DTrace USDT probes: {}", msg);
                ProbeRegistration::Failed(msg)
            }
        };
        #[cfg(not(feature = "usdt-probes"))]
        let probe_registration = {
            debug!(&log, "DTrace USDT probes compiled out, not registering");
            ProbeRegistration::Disabled
        };

        HttpServer {
            probe_registration,
            app_state,
            local_addr,
            closer: CloseHandle { close_channel: Some(tx) },
            join_future: join_handle.boxed().shared(),
        }
    }
}

// TAPROOM PATCH: the accept loop of `HttpServerStarter::start`, unchanged, as a function
// that is not generic over the server's context (see `HandleRequest`).
async fn accept_connections(
    make_service: ServerConnectionHandler,
    limits: ConnectionLimits,
    log: Logger,
    tls_acceptor: Option<Arc<Mutex<TlsAcceptor>>>,
    http_acceptor: HttpAcceptor,
    mut rx: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // http/1 settings (TAPROOM PATCH: each connection gets a timer of its own, a
    // `HeadTimer`, set on its copy of the builder)
    // TAPROOM PATCH: see `ConnectionLimits`.
    if let Some(timeout) = limits.header_read_timeout {
        builder.http1().header_read_timeout(timeout);
    }
    let slots = limits
        .max_connections
        .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    // http/2 settings
    builder.http2().timer(TokioTimer::new());

    // Use a graceful watcher to keep track of all existing connections,
    // and when the close_signal is trigger, force all known conns
    // to start a graceful shutdown.
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();

    // The following code looks superficially similar between the HTTP
    // and HTTPS paths.  However, the concrete types of various objects
    // are different and so it's not easy to actually share the code.
    match tls_acceptor {
        Some(tls_acceptor) => {
            let mut https_acceptor =
                HttpsAcceptor::new(log.clone(), tls_acceptor, http_acceptor);
            loop {
                tokio::select! {
                    Some(Ok(sock)) = https_acceptor.accept() => {
                        // TAPROOM PATCH: see `ConnectionLimits` (over the cap,
                        // TLS connections are closed without an answer).
                        let permit = match &slots {
                            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                                Ok(permit) => Some(permit),
                                Err(_) => {
                                    warn!(log, "too many open connections; refusing one");
                                    continue;
                                }
                            },
                            None => None,
                        };
                        let remote_addr = sock.remote_addr();
                        let handler = make_service
                            .make_http_request_handler(remote_addr);
                        let started = Arc::clone(&handler.started);
                        let mut builder = builder.clone();
                        builder.http1().timer(HeadTimer::default());
                        let fut = builder
                            .serve_connection_with_upgrades(
                                TokioIo::new(sock),
                                handler,
                            );
                        let fut = graceful.watch(fut.into_owned());
                        tokio::spawn(serve_limited(fut, started, limits.header_read_timeout, permit));
                    },

                    _ = &mut rx => {
                        info!(log, "beginning graceful shutdown");
                        break;
                    }
                }
            }
        }
        None => loop {
            tokio::select! {
                (sock, remote_addr) = http_acceptor.accept() => {
                    // TAPROOM PATCH: see `ConnectionLimits`.
                    let permit = match &slots {
                        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                refuse_connection(sock, &refusals, &log);
                                continue;
                            }
                        },
                        None => None,
                    };
                    let handler = make_service
                        .make_http_request_handler(remote_addr);
                    let started = Arc::clone(&handler.started);
                    let mut builder = builder.clone();
                    builder.http1().timer(HeadTimer::default());
                    let fut = builder
                        .serve_connection_with_upgrades(
                            TokioIo::new(sock),
                            handler,
                        );
                    let fut = graceful.watch(fut.into_owned());
                    tokio::spawn(serve_limited(fut, started, limits.header_read_timeout, permit));
                },

                _ = &mut rx => {
                    info!(log, "beginning graceful shutdown");
                    break;
                }
            }
        },
    };

    // optional: could use another select on a timeout
    graceful.shutdown().await
}

/// Accepts TCP connections like a `TcpListener`, but ignores transient errors
/// rather than propagating them to the caller
struct HttpAcceptor {
    tcp: TcpListener,
    log: slog::Logger,
}

impl HttpAcceptor {
    async fn accept(&self) -> (TcpStream, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok((socket, addr)) => {
                    // TAPROOM PATCH: Nagle's algorithm off, as HTTP servers have it:
                    // an answer's last partial segment goes out at once instead of
                    // waiting for the client to acknowledge the ones before it. A
                    // socket that refuses the option still serves.
                    let _ = socket.set_nodelay(true);
                    return (socket, addr);
                }
                Err(e) => match e.kind() {
                    // These are errors on the individual socket that we
                    // tried to accept, and so can be ignored.
                    std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionReset => (),

                    // This could EMFILE implying resource exhaustion.
                    // Sleep a little bit and try again.
                    _ => {
                        warn!(self.log, "accept error"; "error" => e);
                        tokio::time::sleep(std::time::Duration::from_millis(
                            100,
                        ))
                        .await;
                    }
                },
            }
        }
    }
}

/// Wrapper for TlsStream<TcpStream> that also carries the remote SocketAddr
#[derive(Debug)]
struct TlsConn {
    stream: TlsStream<TcpStream>,
    remote_addr: SocketAddr,
}

impl TlsConn {
    fn new(stream: TlsStream<TcpStream>, remote_addr: SocketAddr) -> TlsConn {
        TlsConn { stream, remote_addr }
    }

    fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }
}

/// Forward AsyncRead to the underlying stream
impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        ctx: &mut core::task::Context,
        buf: &mut ReadBuf,
    ) -> Poll<std::io::Result<()>> {
        let pinned = Pin::new(&mut self.stream);
        pinned.poll_read(ctx, buf)
    }
}

/// Forward AsyncWrite to the underlying stream
impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        ctx: &mut core::task::Context,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let pinned = Pin::new(&mut self.stream);
        pinned.poll_write(ctx, data)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        ctx: &mut core::task::Context,
    ) -> Poll<std::io::Result<()>> {
        let pinned = Pin::new(&mut self.stream);
        pinned.poll_flush(ctx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        ctx: &mut core::task::Context,
    ) -> Poll<std::io::Result<()>> {
        let pinned = Pin::new(&mut self.stream);
        pinned.poll_shutdown(ctx)
    }
}

/// This is our bridge between tokio-rustls and hyper. It implements
/// `hyper::server::accept::Accept` interface, producing TLS-over-TCP
/// connections.
///
/// Internally, it creates a stream that produces fully negotiated TLS
/// connections as they come in from a TCP listen socket.  This stream allows
/// for multiple TLS connections to be negotiated concurrently with new
/// connections being accepted.
struct HttpsAcceptor {
    stream: Box<dyn Stream<Item = std::io::Result<TlsConn>> + Send + Unpin>,
}

impl HttpsAcceptor {
    pub fn new(
        log: slog::Logger,
        tls_acceptor: Arc<Mutex<TlsAcceptor>>,
        http_acceptor: HttpAcceptor,
    ) -> HttpsAcceptor {
        HttpsAcceptor {
            stream: Box::new(Box::pin(Self::new_stream(
                log,
                tls_acceptor,
                http_acceptor,
            ))),
        }
    }

    async fn accept(&mut self) -> Option<std::io::Result<TlsConn>> {
        self.stream.next().await
    }

    fn new_stream(
        log: slog::Logger,
        tls_acceptor: Arc<Mutex<TlsAcceptor>>,
        http_acceptor: HttpAcceptor,
    ) -> impl Stream<Item = std::io::Result<TlsConn>> {
        stream! {
            let mut tls_negotiations = futures::stream::FuturesUnordered::new();
            loop {
                tokio::select! {
                    Some(negotiation) = tls_negotiations.next(), if
                            !tls_negotiations.is_empty() => {

                        match negotiation {
                            Ok(conn) => yield Ok(conn),
                            Err(e) => {
                                // If TLS negotiation fails, log the cause but
                                // don't forward it along. Yielding an error
                                // from here will terminate the server.
                                // These failures may be a fatal TLS alert
                                // message, or a client disconnection during
                                // negotiation, or other issues.
                                // TODO: We may want to export a counter for
                                // different error types, since this may contain
                                // useful things like "your certificate is
                                // invalid"
                                warn!(log, "tls accept err: {}", e);
                            },
                        }
                    },
                    (socket, addr) = http_acceptor.accept() => {
                        let tls_negotiation = tls_acceptor
                            .lock()
                            .await
                            .accept(socket)
                            .map_ok(move |stream| TlsConn::new(stream, addr));
                        tls_negotiations.push(tls_negotiation);
                    },
                    else => break,
                }
            }
        }
    }
}

/// Create a TLS configuration from the Dropshot config structure.
impl TryFrom<&ConfigTls> for rustls::ServerConfig {
    type Error = BuildError;

    fn try_from(config: &ConfigTls) -> Result<Self, Self::Error> {
        let (mut cert_reader, mut key_reader): (
            Box<dyn std::io::BufRead>,
            Box<dyn std::io::BufRead>,
        ) = match config {
            ConfigTls::Dynamic(raw) => {
                return Ok(raw.clone());
            }
            ConfigTls::AsBytes { certs, key } => (
                Box::new(std::io::BufReader::new(certs.as_slice())),
                Box::new(std::io::BufReader::new(key.as_slice())),
            ),
            ConfigTls::AsFile { cert_file, key_file } => {
                let certfile = Box::new(std::io::BufReader::new(
                    std::fs::File::open(cert_file).map_err(|e| {
                        BuildError::generic_system(
                            e,
                            format!("opening {}", cert_file.display()),
                        )
                    })?,
                ));
                let keyfile = Box::new(std::io::BufReader::new(
                    std::fs::File::open(key_file).map_err(|e| {
                        BuildError::generic_system(
                            e,
                            format!("opening {}", key_file.display()),
                        )
                    })?,
                ));
                (certfile, keyfile)
            }
        };

        let certs = CertificateDer::pem_reader_iter(&mut cert_reader)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| BuildError::PemError {
                context: "loading TLS certificates".to_string(),
                error: err,
            })?;
        let keys = PrivatePkcs8KeyDer::pem_reader_iter(&mut key_reader)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| BuildError::PemError {
                context: "loading TLS private key".to_string(),
                error: err,
            })?;
        let mut keys_iter = keys.into_iter();
        let (Some(private_key), None) = (keys_iter.next(), keys_iter.next())
        else {
            return Err(BuildError::NotOnePrivateKey);
        };

        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, private_key.into())
            .expect("bad certificate/key");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

type SharedBoxFuture<T> = Shared<Pin<Box<dyn Future<Output = T> + Send>>>;

/// Future returned by [`HttpServer::wait_for_shutdown()`].
pub struct ShutdownWaitFuture(SharedBoxFuture<Result<(), String>>);

impl Future for ShutdownWaitFuture {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl FusedFuture for ShutdownWaitFuture {
    fn is_terminated(&self) -> bool {
        self.0.is_terminated()
    }
}

/// A running Dropshot HTTP server.
///
/// The generic traits represent the following:
/// - C: Caller-supplied server context
pub struct HttpServer<C: ServerContext> {
    probe_registration: ProbeRegistration,
    app_state: Arc<DropshotState<C>>,
    local_addr: SocketAddr,
    closer: CloseHandle,
    join_future: SharedBoxFuture<Result<(), String>>,
}

// Handle used to trigger the shutdown of an [HttpServer].
struct CloseHandle {
    close_channel: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<C: ServerContext> HttpServer<C> {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn app_private(&self) -> &C {
        &self.app_state.private
    }

    pub fn using_tls(&self) -> bool {
        self.app_state.using_tls()
    }

    /// Update TLS certificates for a running HTTPS server.
    pub async fn refresh_tls(&self, config: &ConfigTls) -> Result<(), String> {
        let acceptor = &self
            .app_state
            .tls_acceptor
            .as_ref()
            .ok_or_else(|| "Not configured for TLS".to_string())?;

        *acceptor.lock().await = TlsAcceptor::from(Arc::new(
            rustls::ServerConfig::try_from(config).unwrap(),
        ));
        Ok(())
    }

    /// Return the result of registering the server's DTrace USDT probes.
    ///
    /// See [`ProbeRegistration`] for details.
    pub fn probe_registration(&self) -> &ProbeRegistration {
        &self.probe_registration
    }

    /// Returns a future which completes when the server has shut down.
    ///
    /// This function does not cause the server to shut down. It just waits for
    /// the shutdown to happen.
    ///
    /// To trigger a shutdown, Call [HttpServer::close] (which also awaits
    /// shutdown).
    pub fn wait_for_shutdown(&self) -> ShutdownWaitFuture {
        ShutdownWaitFuture(self.join_future.clone())
    }

    /// Signals the currently running server to stop and waits for it to exit.
    pub async fn close(mut self) -> Result<(), String> {
        self.closer
            .close_channel
            .take()
            .expect("cannot close twice")
            .send(())
            .expect("failed to send close signal");

        // We _must_ explicitly drop our app state before awaiting join_future.
        // If we are running handlers in `Detached` mode, our `app_state` has a
        // `waitgroup::Worker` that they all clone, and `join_future` will await
        // all of them being dropped. That means we must drop our "primary"
        // clone of it, too!
        mem::drop(self.app_state);

        self.join_future.await
    }
}

// For graceful termination, the `close()` function is preferred, as it can
// report errors and wait for termination to complete.  However, we impl
// `Drop` to attempt to shut down the server to handle less clean shutdowns
// (e.g., from failing tests).
impl Drop for CloseHandle {
    fn drop(&mut self) {
        if let Some(c) = self.close_channel.take() {
            // The other side of this channel is owned by a separate tokio task
            // that's running the hyper server.  We do not expect that to be
            // cancelled.  But it can happen if the executor itself is shutting
            // down and that task happens to get cleaned up before this one.
            let _ = c.send(());
        }
    }
}

impl<C: ServerContext> Future for HttpServer<C> {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let server = Pin::into_inner(self);
        let join_future = Pin::new(&mut server.join_future);
        join_future.poll(cx)
    }
}

impl<C: ServerContext> FusedFuture for HttpServer<C> {
    fn is_terminated(&self) -> bool {
        self.join_future.is_terminated()
    }
}

/// Initial entry point for handling a new request to the HTTP server.  This is
/// invoked by Hyper when a new request is received.  This function returns a
/// Result that either represents a valid HTTP response or an error (which will
/// also get turned into an HTTP response).
async fn http_request_handle_wrap(
    server: Arc<dyn HandleRequest>,
    remote_addr: SocketAddr,
    remote_text: Arc<str>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, GenericError> {
    // This extra level of indirection makes error handling much more
    // straightforward, since the request handling code can simply return early
    // with an error and we'll treat it like an error from any of the endpoints
    // themselves.
    let start_time = std::time::Instant::now();
    let request_id =
        request_id_from(&request).unwrap_or_else(generate_request_id);
    // TAPROOM PATCH: what the response hook needs after `request` is consumed.
    let response_hook = server.response_hook().cloned();
    let hook_request = response_hook
        .as_ref()
        .map(|hook| {
            let headers = match hook.request_headers() {
                None => request.headers().clone(),
                Some(names) => {
                    // One pass over the request's few headers: a look-up per
                    // name hashed each name, with or without the header.
                    let mut kept = http::HeaderMap::new();
                    for (name, value) in request.headers() {
                        if names.contains(name) {
                            kept.append(name.clone(), value.clone());
                        }
                    }
                    kept
                }
            };
            (request.method().clone(), request.uri().clone(), headers)
        });
    let mut operation_id: Option<String> = None;

    // TAPROOM PATCH: the request hook's scope, whose keys the request's logger has.
    let scope = server.request_hook().map(|hook| {
        hook.start(&RequestStart {
            request_id: &request_id,
            method: request.method(),
            uri: request.uri(),
            request_headers: request.headers(),
        })
    });
    let scope_keys = match &scope {
        Some(scope) => scope.log_keys(),
        None => Box::new(()),
    };
    let mut request_log = server.log().new(o!(
        // TAPROOM PATCH: formatted once per connection, not in every line.
        "remote_addr" => remote_text,
        "req_id" => request_id.clone(),
        "method" => MethodText(request.method().clone()),
        "uri" => uri_text(request.uri()),
        scope_keys,
    ));
    // If we have been asked to include any headers from the request in the
    // log messages, do so here:
    for name in server.config().log_headers.iter() {
        let v = request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok().map(str::to_string));

        if let Some(v) = v {
            // This is unfortunate in at least two ways: first, we would like to
            // just construct _one_ key value map, but OwnedKV is opaque and can
            // only be constructed with the o!() macro, so the only way to layer
            // on a dynamic set of additional properties is by creating a chain
            // of child loggers to add each one; second, we would like to be
            // able to include all header values under a single map-valued
            // "header" property, but slog only allows us a single-level
            // property hierarchy.  Alas!
            //
            // We also replace the hyphens with underscores to make it easier to
            // refer to the generated properties in dynamic languages used for
            // filtering like rhai.
            let k = format!("hdr_{}", name.to_lowercase().replace('-', "_"));
            request_log = request_log.new(o!(k => v));
        }
    }

    trace!(request_log, "incoming request");
    #[cfg(feature = "usdt-probes")]
    probes::request__start!(|| {
        let uri = request.uri();
        crate::dtrace::RequestInfo {
            id: request_id.clone(),
            local_addr: server.local_addr,
            remote_addr,
            method: request.method().to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(|x| x.to_string()),
        }
    });

    // Copy local address to report later during the finish probe, as the
    // server is passed by value to the request handler function.
    #[cfg(feature = "usdt-probes")]
    let local_addr = server.local_addr;

    // In the case the client disconnects early, the scopeguard allows us
    // to perform extra housekeeping before this task is dropped.
    let on_disconnect = guard(scope, |scope| {
        let latency_us = start_time.elapsed().as_micros();

        warn!(request_log, "request handling cancelled (client disconnected)";
            "latency_us" => latency_us,
        );
        if let Some(scope) = scope {
            scope.finish(None, 499, start_time.elapsed());
        }

        #[cfg(feature = "usdt-probes")]
        probes::request__done!(|| {
            crate::dtrace::ResponseInfo {
                id: request_id.clone(),
                local_addr,
                remote_addr,
                // 499 is a non-standard code popularized by nginx to mean "client disconnected".
                status_code: 499,
                message: String::from(
                    "client disconnected before response returned",
                ),
            }
        });
    });

    let maybe_response = match http_request_route(
        &server,
        request,
        &request_id,
        &request_log,
        remote_addr,
    ) {
        Ok((operation, routed)) => {
            http_request_handle(
                server,
                routed,
                &request_id,
                // TAPROOM PATCH: the same logger; a child with no keys of its own
                // cost an allocation per request and a step in every log line.
                request_log.clone(),
                operation_id.insert(operation),
                on_disconnect.as_deref(),
            )
            .await
        }
        Err(error) => Err(error),
    };

    // If `http_request_handle` completed, it means the request wasn't
    // cancelled and we can safely "defuse" the scopeguard.
    let scope = ScopeGuard::into_inner(on_disconnect);

    // TAPROOM PATCH: one clock read for the log line and the hook.
    let latency = start_time.elapsed();
    let latency_us = latency.as_micros();
    let response = match maybe_response {
        Err(error) => {
            {
                let status = error.status_code();
                let message_external = error.external_message();
                let message_internal = error.internal_message();

                #[cfg(feature = "usdt-probes")]
                probes::request__done!(|| {
                    crate::dtrace::ResponseInfo {
                        id: request_id.clone(),
                        local_addr,
                        remote_addr,
                        status_code: status.as_u16(),
                        message: message_external
                            .cloned()
                            .unwrap_or_else(|| message_internal.clone()),
                    }
                });

                // TODO-debug: add request and response headers here
                info!(request_log, "request completed";
                    "operation_id" => operation_id.as_deref(),
                    "response_code" => status.as_u16(),
                    "latency_us" => latency_us,
                    "error_message_internal" => message_internal,
                    "error_message_external" => message_external,
                );
            };
            let http_error = match &error {
                HandlerError::Dropshot(e) => Some(crate::HttpError {
                    status_code: e.status_code,
                    error_code: e.error_code.clone(),
                    external_message: e.external_message.clone(),
                    internal_message: e.internal_message.clone(),
                    headers: None,
                }),
                HandlerError::Handler { .. } => None,
            };
            let response = error.into_response(&request_id);
            match (&response_hook, &hook_request) {
                (Some(hook), Some((method, uri, headers))) => hook.on_response(
                    &ResponseContext {
                        request_id: &request_id,
                        method,
                        uri,
                        request_headers: headers,
                        operation_id: operation_id.as_deref(),
                        error: http_error.as_ref(),
                    },
                    response,
                ),
                _ => response,
            }
        }

        Ok(response) => {
            // TODO-debug: add request and response headers here
            info!(request_log, "request completed";
                "operation_id" => operation_id.as_deref(),
                "response_code" => response.status().as_u16(),
                "latency_us" => latency_us,
            );
            let response = match (&response_hook, &hook_request) {
                (Some(hook), Some((method, uri, headers))) => hook.on_response(
                    &ResponseContext {
                        request_id: &request_id,
                        method,
                        uri,
                        request_headers: headers,
                        operation_id: operation_id.as_deref(),
                        error: None,
                    },
                    response,
                ),
                _ => response,
            };

            #[cfg(feature = "usdt-probes")]
            probes::request__done!(|| {
                crate::dtrace::ResponseInfo {
                    id: request_id.parse().unwrap(),
                    local_addr,
                    remote_addr,
                    status_code: response.status().as_u16(),
                    message: "".to_string(),
                }
            });

            response
        }
    };
    if let Some(scope) = scope {
        scope.finish(
            operation_id.as_deref(),
            response.status().as_u16(),
            latency,
        );
    }

    Ok(response)
}

// TAPROOM PATCH: the part of handling a request before the handler runs is not
// async, so it is a plain function: a future keeps every argument and every local
// alive across an await, and the request (240 bytes, twice: as received and with its
// body wrapped) made the request's future ~1 KiB larger, copied whenever it moved.
/// What `http_request_route` hands to `http_request_handle` (with the operation id).
struct RoutedRequest {
    task: Routed,
    method: http::Method,
    /// The request headers, when compression needs them after the handler.
    request_headers: Option<http::HeaderMap>,
    task_mode: HandlerTaskMode,
}

#[allow(clippy::result_large_err)]
fn http_request_route(
    server: &Arc<dyn HandleRequest>,
    request: Request<hyper::body::Incoming>,
    request_id: &str,
    request_log: &Logger,
    remote_addr: std::net::SocketAddr,
) -> Result<(String, RoutedRequest), HandlerError> {
    // TODO-hardening: is it correct to (and do we correctly) read the entire
    // request body even if we decide it's too large and are going to send a 400
    // response?
    // TODO-hardening: add a request read timeout as well so that we don't allow
    // this to take forever.
    // TODO-correctness: Do we need to dump the body on errors?
    // TAPROOM PATCH: the body must arrive within `ConnectionLimits::body_read_timeout`
    // (a request without one needs no timer).
    let body_read_timeout = server.connection_limits().body_read_timeout;
    let request = request.map(|body| match body_read_timeout {
        Some(limit) if !hyper::body::Body::is_end_stream(&body) => {
            crate::Body::wrap(crate::body::Deadline::new(body, limit))
        }
        _ => crate::Body::wrap(body),
    });
    let method = request.method().clone();
    let found_version =
        server.version_policy().request_version(&request, request_log)?;
    // TAPROOM PATCH: only compression reads the request headers afterwards.
    let request_headers = match server.config().compression {
        CompressionConfig::Gzip => Some(request.headers().clone()),
        CompressionConfig::None => None,
    };
    // TAPROOM PATCH: routing, the request context and the handler are the part that
    // depends on the context type (see `HandleRequest`).
    let default_handler_task_mode = server.config().default_handler_task_mode;
    let (operation, task) = Arc::clone(server).route(
        request,
        found_version.as_ref(),
        request_id,
        request_log,
        remote_addr,
    )?;

    // TAPROOM PATCH: `DetachedUnlessSafe` runs a safe method on this task,
    // still inside the request hook's scope, as a detached handler would run.
    let safe = matches!(
        method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    let task_mode = match default_handler_task_mode {
        HandlerTaskMode::DetachedUnlessSafe if safe => {
            HandlerTaskMode::CancelOnDisconnect
        }
        HandlerTaskMode::DetachedUnlessSafe => HandlerTaskMode::Detached,
        mode => mode,
    };
    Ok((operation, RoutedRequest { task, method, request_headers, task_mode }))
}

async fn http_request_handle(
    server: Arc<dyn HandleRequest>,
    routed: RoutedRequest,
    request_id: &str,
    request_log: Logger,
    operation: &str,
    scope: Option<&dyn RequestScope>,
) -> Result<Response<Body>, HandlerError> {
    let RoutedRequest { task, method, request_headers, task_mode } = routed;
    let mut response = match (task_mode, scope) {
        (HandlerTaskMode::CancelOnDisconnect, Some(scope)) => {
            Entered { scope, task }.await?
        }
        (HandlerTaskMode::CancelOnDisconnect, None) => {
            // For CancelOnDisconnect, we run the request handler directly: if
            // the client disconnects, we will be cancelled, and therefore this
            // future will too.
            task.await?
        }
        // (`DetachedUnlessSafe` was resolved to one of the others above.)
        (HandlerTaskMode::Detached | HandlerTaskMode::DetachedUnlessSafe, scope) => {
            // Spawn the handler so if we're cancelled, the handler still runs
            // to completion.
            let (tx, rx) = oneshot::channel();
            let handler_log = request_log.clone();
            let worker = server.handler_waitgroup_worker().clone();
            let routed = task;
            let task = Box::pin(async move {
                let request_log = handler_log;
                let result = routed.await;

                // If this send fails, our spawning task has been cancelled in
                // the `rx.await` below; log such a result.
                if let Err(result) = tx.send(result) {
                    match result {
                        Ok(r) => warn!(
                            request_log, "request completed after handler was already cancelled";
                            "response_code" => r.status().as_u16(),
                        ),
                        Err(error) => {
                            warn!(request_log, "request completed after handler was already cancelled";
                                "response_code" => error.status_code().as_u16(),
                                "error_message_internal" => error.internal_message(),
                                "error_message_external" => error.external_message(),
                            );
                        }
                    }
                }

                // Drop our waitgroup worker, allowing graceful shutdown to
                // complete (if it's waiting on us).
                mem::drop(worker);
            });
            // TAPROOM PATCH: the request hook's scope runs the handler's task.
            let handler_task = match scope {
                Some(scope) => tokio::spawn(scope.run(operation, task)),
                None => tokio::spawn(task),
            };

            // The only way we can fail to receive on `rx` is if `tx` is
            // dropped before a result is sent, which can only happen if
            // `handle_request` panics. We will propagate such a panic here,
            // just as we would have in `CancelOnDisconnect` mode above (where
            // we call the handler directly).
            match rx.await {
                Ok(result) => result?,
                Err(_) => {
                    error!(request_log, "handler panicked; propagating panic");

                    // To get the panic, we now need to await `handler_task`; we
                    // know it is complete _and_ it failed, because it has
                    // dropped `tx` without sending us a result, which is only
                    // possible if it panicked.
                    let task_err = handler_task.await.expect_err(
                        "task failed to send result but didn't panic",
                    );
                    panic::resume_unwind(task_err.into_panic());
                }
            }
        }
    };

    if let Some(request_headers) = request_headers
        .as_ref()
        .filter(|_| is_compressible_content_type(response.headers()))
    {
        // Add Vary: Accept-Encoding header for all compressible content
        // types. This needs to be there even if the response ends up not being
        // compressed because it tells caches (like browsers and CDNs) that the
        // response content depends on the value of the Accept-Encoding header.
        // Without this, a cache might mistakenly serve a compressed response to
        // a client that cannot decompress it, or serve an uncompressed response
        // to a client that could have benefited from compression.
        add_vary_header(response.headers_mut());

        if should_compress_response(
            &method,
            request_headers,
            response.status(),
            response.headers(),
            response.extensions(),
        ) {
            response = apply_gzip_compression(response);
        }
    }

    response.headers_mut().insert(
        REQUEST_ID_NAME,
        http::header::HeaderValue::from_str(&request_id).unwrap(),
    );
    Ok(response)
}

// TAPROOM PATCH: a handler awaited on the connection's task, each of its polls
// made inside the request hook's scope (`RequestScope::enter`).
struct Entered<'a, F> {
    scope: &'a dyn RequestScope,
    task: F,
}

impl<F: Future + Unpin> Future for Entered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Entered { scope, task } = &mut *self;
        let mut output = Poll::Pending;
        scope.enter(&mut || output = Pin::new(&mut *task).poll(cx));
        output
    }
}

// This function should probably be parametrized by some name of the service
// that is expected to be unique within an organization.  That way, it would be
// possible to determine from a given request id which service it was from.
// TODO should we encode more information here?  Service?  Instance?  Time up to
// the hour?
fn generate_request_id() -> String {
    // TAPROOM PATCH: uuid's own encoder, not the formatting machinery.
    String::from(&*Uuid::new_v4().hyphenated().encode_lower(&mut Uuid::encode_buffer()))
}

// TAPROOM PATCH: the method in the log line, as its text; a standard method is
// copied without an allocation, as a `String` of it was not.
struct MethodText(http::Method);

impl slog::Value for MethodText {
    fn serialize(
        &self,
        _: &slog::Record<'_>,
        key: slog::Key,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        serializer.emit_str(key, self.0.as_str())
    }
}

// TAPROOM PATCH: the request's URI as `Display` writes it, without the formatting
// machinery for the usual origin-form (a path and a query).
fn uri_text(uri: &http::Uri) -> String {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return uri.to_string();
    }
    let (path, query) = (uri.path(), uri.query());
    let mut text = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    text.push_str(path);
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    text
}

/// ServerConnectionHandler is a Hyper Service implementation that forwards
/// incoming connections to `http_connection_handle()`, providing the server
/// state object as an additional argument.  We could use `make_service_fn` here
/// using a closure to capture the state object, but the resulting code is a bit
/// simpler without it.
pub struct ServerConnectionHandler {
    /// backend state that will be made available to the connection handler
    server: Arc<dyn HandleRequest>,
}

impl ServerConnectionHandler {
    /// Create an ServerConnectionHandler with the given state object that
    /// will be made available to the handler.
    fn new(server: Arc<dyn HandleRequest>) -> Self {
        ServerConnectionHandler { server }
    }

    /// Initial entry point for handling a new connection to the HTTP server.
    /// This is invoked by Hyper when a new connection is accepted.  This function
    /// must return a Hyper Service object that will handle requests for this
    /// connection.
    fn make_http_request_handler(
        &self,
        remote_addr: SocketAddr,
    ) -> ServerRequestHandler {
        // TAPROOM PATCH: the address formatted once for the connection's lines.
        let handler = ServerRequestHandler::new(self.server.clone(), remote_addr);
        info!(self.server.log(), "accepted connection"; "remote_addr" => &*handler.remote_text);
        handler
    }
}

// TAPROOM PATCH: the server as its connections and requests see it. Code generic over
// the context type is compiled again for every context a program serves; hyper's whole
// HTTP/1 and HTTP/2 connection code, the accept loop and the request handling around the
// handler were. Through this trait they are compiled once: only routing and the handler
// (`route`) depend on the context; the handler's future, boxed already, is returned as
// it is (`RouteHandler::handle_request` takes an `Arc`, so the future owns its handler).
trait HandleRequest: Send + Sync + 'static {
    fn log(&self) -> &Logger;
    fn config(&self) -> &ServerConfig;
    fn version_policy(&self) -> &VersionPolicy;
    fn response_hook(&self) -> Option<&Arc<dyn ResponseHook>>;
    fn request_hook(&self) -> Option<&Arc<dyn RequestHook>>;
    fn connection_limits(&self) -> &ConnectionLimits;
    fn handler_waitgroup_worker(&self) -> &waitgroup::Worker;
    /// Looks up the request's route, and returns its operation id and the handler's
    /// future for the request.
    fn route(
        self: Arc<Self>,
        request: Request<Body>,
        version: Option<&semver::Version>,
        request_id: &str,
        request_log: &Logger,
        remote_addr: SocketAddr,
    ) -> Result<(String, Routed), crate::HttpError>;
}

/// The routed handler's future (see `HandleRequest::route`).
type Routed = BoxFuture<'static, Result<Response<Body>, HandlerError>>;

impl<C: ServerContext> HandleRequest for DropshotState<C> {
    fn log(&self) -> &Logger {
        &self.log
    }
    fn config(&self) -> &ServerConfig {
        &self.config
    }
    fn version_policy(&self) -> &VersionPolicy {
        &self.version_policy
    }
    fn response_hook(&self) -> Option<&Arc<dyn ResponseHook>> {
        self.response_hook.0.as_ref()
    }
    fn request_hook(&self) -> Option<&Arc<dyn RequestHook>> {
        self.request_hook.0.as_ref()
    }
    fn connection_limits(&self) -> &ConnectionLimits {
        &self.connection_limits
    }
    fn handler_waitgroup_worker(&self) -> &waitgroup::Worker {
        &self.handler_waitgroup_worker
    }

    fn route(
        self: Arc<Self>,
        mut request: Request<Body>,
        version: Option<&semver::Version>,
        request_id: &str,
        request_log: &Logger,
        remote_addr: SocketAddr,
    ) -> Result<(String, Routed), crate::HttpError> {
        let lookup_result = self.router.lookup_route(
            request.method(),
            request.uri().path().into(),
            version,
        )?;
        let operation_id = lookup_result.endpoint.operation_id.clone();
        let rqctx = RequestContext {
            request: Box::new(RequestInfo::taking_headers(&mut request, remote_addr)),
            server: self,
            endpoint: lookup_result.endpoint,
            request_id: request_id.to_string(),
            log: request_log.clone(),
        };
        Ok((operation_id, lookup_result.handler.handle_request(rqctx, request)))
    }
}

/// ServerRequestHandler is a Hyper Service implementation that forwards
/// incoming requests to `http_request_handle_wrap()`, including as an argument
/// the backend server state object.  We could use `service_fn` here using a
/// closure to capture the server state object, but the resulting code is a bit
/// simpler without all that.
pub struct ServerRequestHandler {
    /// backend state that will be made available to the request handler
    server: Arc<dyn HandleRequest>,
    remote_addr: SocketAddr,
    // TAPROOM PATCH: set once a request has arrived on the connection.
    started: Arc<std::sync::atomic::AtomicBool>,
    // TAPROOM PATCH: `remote_addr` as every log line of the connection writes it.
    remote_text: Arc<str>,
}

impl ServerRequestHandler {
    /// Create a ServerRequestHandler object with the given state object that
    /// will be provided to the handler function.
    fn new(server: Arc<dyn HandleRequest>, remote_addr: SocketAddr) -> Self {
        ServerRequestHandler {
            server,
            remote_addr,
            started: Default::default(),
            remote_text: remote_addr.to_string().into(),
        }
    }
}

impl Service<Request<hyper::body::Incoming>> for ServerRequestHandler {
    type Response = Response<Body>;
    type Error = GenericError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        self.started.store(true, std::sync::atomic::Ordering::Release);
        Box::pin(http_request_handle_wrap(
            Arc::clone(&self.server),
            self.remote_addr,
            Arc::clone(&self.remote_text),
            req,
        ))
    }
}

/// Errors encountered while configuring a Dropshot server
#[derive(Debug, Error)]
pub enum BuildError {
    #[error("failed to bind to {address}")]
    BindError {
        address: SocketAddr,
        #[source]
        error: std::io::Error,
    },
    #[error("expected exactly one TLS private key")]
    NotOnePrivateKey,
    #[error("{context}")]
    PemError {
        context: String,
        #[source]
        error: rustls::pki_types::pem::Error,
    },
    #[error("{context}")]
    SystemError {
        context: String,
        #[source]
        error: std::io::Error,
    },
    #[error("unversioned servers cannot have endpoints with specific versions")]
    UnversionedServerHasVersionedRoutes,
}

impl BuildError {
    /// Generate an error for failure to bind to `address`
    fn bind_error(error: std::io::Error, address: SocketAddr) -> BuildError {
        BuildError::BindError { address, error }
    }

    /// Generate an error for any kind of `std::io::Error`
    ///
    /// `context` describes more about what we were trying to do that generated
    /// the error.
    fn generic_system<S: Into<String>>(
        error: std::io::Error,
        context: S,
    ) -> BuildError {
        BuildError::SystemError { context: context.into(), error }
    }
}

/// Start configuring a Dropshot server
#[derive(Debug)]
pub struct ServerBuilder<C: ServerContext> {
    // required caller-provided values
    private: C,
    log: Logger,
    api: DebugIgnore<ApiDescription<C>>,

    // optional caller-provided values
    config: ConfigDropshot,
    version_policy: VersionPolicy,
    tls: Option<ConfigTls>,
    response_hook: DebugIgnore<Option<Arc<dyn ResponseHook>>>,
    request_hook: DebugIgnore<Option<Arc<dyn RequestHook>>>,
    connection_limits: ConnectionLimits,
}

impl<C: ServerContext> ServerBuilder<C> {
    /// Start configuring a new Dropshot server
    ///
    /// * `api`: the API to be hosted on this server
    /// * `private`: your private data that will be made available in
    ///   `RequestContext`
    /// * `log`: a slog logger for all server events
    pub fn new(
        api: ApiDescription<C>,
        private: C,
        log: Logger,
    ) -> ServerBuilder<C> {
        ServerBuilder {
            private,
            log,
            api: DebugIgnore(api),
            config: Default::default(),
            version_policy: VersionPolicy::Unversioned,
            tls: Default::default(),
            response_hook: DebugIgnore(None),
            request_hook: DebugIgnore(None),
            connection_limits: Default::default(),
        }
    }

    /// TAPROOM PATCH: have `hook` follow every request (see [`RequestHook`]).
    pub fn request_hook(mut self, hook: Arc<dyn RequestHook>) -> Self {
        self.request_hook = DebugIgnore(Some(hook));
        self
    }

    /// TAPROOM PATCH: have `hook` see (and may rewrite) every response.
    pub fn response_hook(mut self, hook: Arc<dyn ResponseHook>) -> Self {
        self.response_hook = DebugIgnore(Some(hook));
        self
    }

    /// TAPROOM PATCH: bound slow and idle clients (see [`ConnectionLimits`]).
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.connection_limits = limits;
        self
    }

    /// Specify the server configuration
    pub fn config(mut self, config: ConfigDropshot) -> Self {
        self.config = config;
        self
    }

    /// Specify the TLS configuration, if any
    ///
    /// `None` (the default) means no TLS.  The server will listen for plain
    /// HTTP.
    pub fn tls(mut self, tls: Option<ConfigTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Specifies whether and how this server determines the API version to use
    /// for incoming requests
    ///
    /// All the interfaces related to [`VersionPolicy`] are considered
    /// experimental and may change in an upcoming release.
    pub fn version_policy(mut self, version_policy: VersionPolicy) -> Self {
        self.version_policy = version_policy;
        self
    }

    /// Start the server
    ///
    /// # Errors
    ///
    /// See [`ServerBuilder::build_starter()`].
    pub fn start(self) -> Result<HttpServer<C>, BuildError> {
        Ok(self.build_starter()?.start())
    }

    /// Build an `HttpServerStarter` that can be used to start the server
    ///
    /// Most consumers probably want to use `start()` instead.
    ///
    /// # Errors
    ///
    /// This fails if:
    ///
    /// * We could not bind to the requested IP address and TCP port
    /// * The provided `tls` configuration was not valid
    /// * The `version_policy` is `VersionPolicy::Unversioned` and `api` (the
    ///   `ApiDescription`) contains any endpoints that are version-restricted
    ///   (i.e., have "versions" set to anything other than
    ///   `ApiEndpointVersions::All)`.  Versioned routes are not supported with
    ///   unversioned servers.
    pub fn build_starter(self) -> Result<HttpServerStarter<C>, BuildError> {
        HttpServerStarter::new_internal(
            &self.config,
            self.api.0,
            self.private,
            &self.log,
            self.tls,
            self.version_policy,
            self.response_hook.0,
            self.request_hook.0,
            self.connection_limits,
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;
    // Referring to the current crate as "dropshot::" instead of "crate::"
    // helps the endpoint macro with module lookup.
    use crate as dropshot;
    use dropshot::ConfigLogging;
    use dropshot::ConfigLoggingLevel;
    use dropshot::HttpError;
    use dropshot::HttpResponseOk;
    use dropshot::RequestContext;
    use dropshot::endpoint;
    use dropshot::test_util::ClientTestContext;
    use dropshot::test_util::LogContext;
    use http::StatusCode;
    use hyper::Method;

    use futures::future::FusedFuture;

    #[endpoint {
        method = GET,
        path = "/handler",
    }]
    async fn handler(
        _rqctx: RequestContext<i32>,
    ) -> Result<HttpResponseOk<u64>, HttpError> {
        Ok(HttpResponseOk(3))
    }

    struct TestConfig {
        log_context: LogContext,
    }

    impl TestConfig {
        fn log(&self) -> &slog::Logger {
            &self.log_context.log
        }
    }

    fn create_test_server() -> (HttpServer<i32>, TestConfig) {
        let config_dropshot = ConfigDropshot::default();

        let mut api = ApiDescription::new();
        api.register(handler).unwrap();

        let config_logging =
            ConfigLogging::StderrTerminal { level: ConfigLoggingLevel::Warn };
        let log_context = LogContext::new("test server", &config_logging);
        let log = &log_context.log;

        let server = HttpServerStarter::new(&config_dropshot, api, 0, log)
            .unwrap()
            .start();

        (server, TestConfig { log_context })
    }

    async fn single_client_request(addr: SocketAddr, log: &slog::Logger) {
        let client_log = log.new(o!("http_client" => "dropshot test suite"));
        let client_testctx = ClientTestContext::new(addr, client_log);
        tokio::task::spawn(async move {
            let response = client_testctx
                .make_request(
                    Method::GET,
                    "/handler",
                    None as Option<()>,
                    StatusCode::OK,
                )
                .await;

            assert!(response.is_ok());
        })
        .await
        .expect("client request failed");
    }

    #[tokio::test]
    async fn test_server_run_then_close() {
        let (mut server, config) = create_test_server();
        let client = single_client_request(server.local_addr(), config.log());

        futures::select! {
            _ = client.fuse() => {},
            r = server => panic!("Server unexpectedly terminated: {:?}", r),
        }

        assert!(!server.is_terminated());
        assert!(server.close().await.is_ok());
    }

    #[tokio::test]
    async fn test_drop_server_without_close_okay() {
        let (server, _) = create_test_server();
        std::mem::drop(server);
    }

    #[tokio::test]
    async fn test_http_acceptor_happy_path() {
        const TOTAL: usize = 100;
        let tcp =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("local_addr");
        let acceptor =
            HttpAcceptor { log: slog::Logger::root(slog::Discard, o!()), tcp };

        let t1 = tokio::spawn(async move {
            for _ in 0..TOTAL {
                let _ = acceptor.accept().await;
            }
        });

        let t2 = tokio::spawn(async move {
            for _ in 0..TOTAL {
                tokio::net::TcpStream::connect(&addr).await.expect("connect");
            }
        });

        t1.await.expect("task 1");
        t2.await.expect("task 2");
    }
}
