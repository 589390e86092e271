//! One provider's HTTP/1.1 connections, each driven by the request using it.
//!
//! hyper's pooled client runs every connection as a task of its own, so each
//! response head and each body chunk passes from that task to the request's
//! through a channel and a wake-up, and every response spawns one more task
//! to put the connection back. Here a request *leases* a connection: its own
//! task polls the connection while it waits for the head and, through
//! [`UpstreamBody`], while it reads the body, and the body returns the
//! connection to the pool once the provider's answer has been read to its
//! end. Nothing polls an idle connection; taking one polls it once, so one the
//! provider has closed is seen as finished and dropped.
//!
//! A body dropped before its end (the client went away, a retryable status
//! whose body is not wanted) closes its connection: it is never reused with
//! an answer half read.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// How long an idle connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept per provider; more are closed when they come back.
const MAX_IDLE: usize = 512;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// A provider's connections.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// The provider's scheme and authority: where connections go.
    target: Uri,
    /// Most recently used last: taken first, so the fewest stay warm.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// One HTTP/1.1 connection: the handle that sends on it and the state
/// machine that reads and writes it, polled by whoever holds this.
struct Conn {
    tx: http1::SendRequest<Full<Bytes>>,
    io: http1::Connection<Io, Full<Bytes>>,
    /// The state machine finished (the connection closed or failed); it
    /// must not be polled again.
    done: bool,
}

/// Why a request got no response head.
pub enum SendError {
    /// Nothing could be sent: no connection, or it broke before the request
    /// was written.
    Connect,
    /// The connection broke after the request (or part of it) was written.
    Broken,
}

// === impl Pool ===

impl Pool {
    /// Connections to `target` (scheme and authority) made by `connector`.
    pub fn new(connector: HttpsConnector<HttpConnector>, target: Uri) -> Arc<Self> {
        Arc::new(Self {
            connector,
            target,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` (its URI in origin form, its `Host` set) on an idle
    /// connection, or a new one, and waits for the response head. An idle
    /// connection that turns out closed before the request was written is
    /// replaced by a new one, once.
    #[cfg(test)]
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        self.send_marking(req, &AtomicBool::new(false)).await
    }

    /// As `send`, and sets `connected` once a connection holds the request
    /// (from then on the provider may receive it; before, it cannot).
    pub async fn send_marking(
        self: &Arc<Self>,
        mut req: Request<Full<Bytes>>,
        connected: &AtomicBool,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if let Some(mut conn) = self.take_idle() {
            connected.store(true, Ordering::Relaxed);
            match conn.exchange(req).await {
                Ok(resp) => return Ok(self.lease(resp, conn)),
                Err(Some(unsent)) => req = unsent,
                Err(None) => return Err(SendError::Broken),
            }
        }
        // Boxed: connecting (TCP, TLS, handshake) is the largest state of
        // this future, and every request's future would carry its size
        // (see `exchange::handle` on why that size matters); boxed, only a
        // request that connects pays for it, and only while it does.
        let mut conn = Box::pin(self.connect()).await?;
        connected.store(true, Ordering::Relaxed);
        match conn.exchange(req).await {
            Ok(resp) => Ok(self.lease(resp, conn)),
            Err(Some(_)) => Err(SendError::Connect),
            Err(None) => Err(SendError::Broken),
        }
    }

    /// Idle connections held now.
    fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lease(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        conn: Box<Conn>,
    ) -> Response<UpstreamBody> {
        let lease = (!conn.done).then(|| Lease {
            conn,
            pool: Arc::clone(self),
        });
        resp.map(|incoming| UpstreamBody { incoming, lease })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<Box<Conn>> {
        loop {
            let Idle { mut conn, since } = self.lock().pop()?;
            if since.elapsed() < POOL_IDLE && conn.is_open() {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection whose last exchange ended cleanly.
    fn put(&self, conn: Box<Conn>) {
        let now = Instant::now();
        let (stale, refused) = {
            let mut idle = self.lock();
            // The oldest is first; one that has waited too long goes now
            // rather than whenever the pool drains that far.
            let stale = idle
                .first()
                .is_some_and(|oldest| now.duration_since(oldest.since) >= POOL_IDLE)
                .then(|| idle.remove(0));
            let refused = if idle.len() < MAX_IDLE {
                idle.push(Idle { conn, since: now });
                None
            } else {
                Some(conn)
            };
            (stale, refused)
        };
        // Closed outside the lock.
        drop((stale, refused));
    }

    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|_| SendError::Connect)?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(|_| SendError::Connect)?;
        let (tx, io) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|_| SendError::Connect)?;
        Ok(Box::new(Conn {
            tx,
            io,
            done: false,
        }))
    }
}

// === impl Conn ===

impl Conn {
    /// Lets the connection read and write what it can; `Ready` once it has
    /// finished for good.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.done && Pin::new(&mut self.io).poll(cx).is_ready() {
            self.done = true;
        }
        if self.done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether an idle connection can take a request: one poll (no wake-up
    /// wanted) notices a close the provider sent while it sat in the pool.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx).is_pending() && self.tx.is_ready()
    }

    /// Sends `req` and drives the connection until the response head. On
    /// failure, the request comes back if none of it was written.
    async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Option<Request<Full<Bytes>>>> {
        let mut answer = pin!(self.tx.try_send_request(req));
        poll_fn(|cx| {
            let finished = self.drive(cx).is_ready();
            match answer.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(r.map_err(|mut e| e.take_message())),
                // hyper's dispatcher fails every request it holds as it
                // stops, so this is not expected; if it were, waiting would
                // only run into the provider's timeout.
                Poll::Pending if finished => Poll::Ready(Err(None)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// A connection out of the pool, with the way back.
struct Lease {
    conn: Box<Conn>,
    pool: Arc<Pool>,
}

/// A provider's response body. Reading it drives its connection; once read
/// to its end, the connection goes back to the pool.
pub struct UpstreamBody {
    incoming: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    /// The answer has been read whole: one more turn of the connection lets
    /// it finish the exchange and ask for the next request, then it is kept.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(Lease { mut conn, pool }) = self.lease.take()
            && conn.drive(cx).is_pending()
            && conn.tx.is_ready()
        {
            pool.put(conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut polled = Pin::new(&mut this.incoming).poll_frame(cx);
        if polled.is_pending()
            && let Some(lease) = this.lease.as_mut()
        {
            // Nothing handed over yet: let the connection read (it hands
            // over at most one frame a turn), then look again. A connection
            // that has finished has closed the body, which the second look
            // reports.
            if lease.conn.drive(cx).is_ready() {
                this.lease = None;
            }
            polled = Pin::new(&mut this.incoming).poll_frame(cx);
        }
        match &polled {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Ok(_))) if this.incoming.is_end_stream() => this.release(cx),
            // A broken body: the connection is not reused.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;

    use super::*;

    /// An HTTP/1.1 server on 127.0.0.1:0 answering `ok` to everything;
    /// returns its URI and the count of connections it accepted.
    async fn server() -> (Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (uri.parse().unwrap(), accepted)
    }

    fn pool(target: &Uri) -> Arc<Pool> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Pool::new(
            super::super::https_connector(
                super::super::tls_config(None, crate::config::MinTls::V1_2).unwrap(),
            ),
            target.clone(),
        )
    }

    fn request() -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from_static(b"{}")));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = Uri::from_static("/v1/chat/completions");
        req
    }

    async fn send(pool: &Arc<Pool>) -> Response<UpstreamBody> {
        match pool.send(request()).await {
            Ok(resp) => resp,
            Err(_) => panic!("no response"),
        }
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_gives_its_connection_back_for_the_next_request() {
        let (uri, accepted) = server().await;
        let pool = pool(&uri);
        for _ in 0..3 {
            let body = send(&pool).await.into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), "ok");
            assert_eq!(pool.idle_count(), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let (uri, accepted) = server().await;
        let pool = pool(&uri);
        drop(send(&pool).await);
        assert_eq!(pool.idle_count(), 0);
        send(&pool).await.into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_idle_too_long_is_not_taken() {
        let (uri, accepted) = server().await;
        let pool = pool(&uri);
        send(&pool).await.into_body().collect().await.unwrap();
        let long_ago = Instant::now().checked_sub(POOL_IDLE).unwrap();
        pool.lock()[0].since = long_ago;
        send(&pool).await.into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // The new connection is kept; the old one is gone.
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri: Uri = format!("http://{}/v1", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        assert!(matches!(
            pool(&uri).send(request()).await,
            Err(SendError::Connect)
        ));
    }
}
