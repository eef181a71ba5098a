//! Connection limits of the HTTP server: a listener that holds at most `max_connections`
//! connections at once (the next waits in the kernel's accept queue until one closes),
//! and connections that close themselves when they make no progress.
//!
//! A connection makes progress when it reads or writes at least a byte. One that makes
//! none for `idle_timeout` while no request of it is being handled (a client that sends
//! nothing, half a request head, or does not read its answer; an idle keep-alive) fails
//! its next read or write, which ends it. A request being handled is not cut: the
//! handlers bound their own time (see `guard`). A connection older than
//! `max_connection_age` ends the same way at its next stall outside a request, so a client
//! that trickles a byte every few seconds holds a slot for that long at most.
//!
//! Not for request-level limits (token, body size and time, in-flight gate): `guard`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long connections may live and stall, and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_age: Duration,
}

/// A TCP listener that hands out at most `max_connections` connections at once.
pub struct Guarded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    limits: Limits,
}

impl Guarded {
    pub fn new(inner: TcpListener, limits: Limits) -> Guarded {
        Guarded {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }
}

impl Listener for Guarded {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, SocketAddr) {
        // Waiting for a slot before accepting leaves the next connections in the kernel's
        // queue rather than holding a descriptor each here.
        // The semaphore is never closed; were it, serving without the limit beats not
        // serving.
        let slot = self.slots.clone().acquire_owned().await.ok();
        let (tcp, addr) = Listener::accept(&mut self.inner).await;
        (GuardedIo::new(tcp, slot, self.limits), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What the request layer tells a connection: how many of its requests are being
/// handled, and how many have finished (a change counts as progress).
#[derive(Debug, Default)]
pub struct Activity {
    handling: AtomicUsize,
    finished: AtomicU64,
}

impl Activity {
    /// Marks a request as being handled until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::SeqCst);
        Handling(self.clone())
    }
}

/// A request being handled (see [`Activity::begin`]).
pub struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's [`Activity`], given to each of its requests as `ConnectInfo`.
#[derive(Debug, Clone)]
pub struct Conn(pub Arc<Activity>);

impl Connected<IncomingStream<'_, Guarded>> for Conn {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Conn {
        Conn(stream.io().activity.clone())
    }
}

/// A connection that holds a slot of the listener and fails when it stalls.
pub struct GuardedIo {
    // Declared before the slot: the socket closes before the slot is given back.
    tcp: TcpStream,
    _slot: Option<OwnedSemaphorePermit>,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    /// Where `max_connection_age` ends; no deadline is set past it.
    last_call: Instant,
    deadline: Pin<Box<Sleep>>,
    /// `Activity::finished` when last looked at.
    seen_finished: u64,
}

impl GuardedIo {
    fn new(tcp: TcpStream, slot: Option<OwnedSemaphorePermit>, limits: Limits) -> GuardedIo {
        let now = Instant::now();
        let last_call = now + limits.max_age;
        GuardedIo {
            tcp,
            _slot: slot,
            activity: Arc::default(),
            idle_timeout: limits.idle_timeout,
            last_call,
            deadline: Box::pin(tokio::time::sleep_until(
                (now + limits.idle_timeout).min(last_call),
            )),
            seen_finished: 0,
        }
    }

    fn progressed(&mut self) {
        let at = (Instant::now() + self.idle_timeout).min(self.last_call);
        self.deadline.as_mut().reset(at);
    }

    /// True when the connection has stalled past its deadline outside a request; else
    /// the deadline wakes the task when it passes.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if self.activity.handling.load(Ordering::SeqCst) > 0 {
            // Polled again when the request ends (its answer is written).
            self.progressed();
            return false;
        }
        let finished = self.activity.finished.load(Ordering::SeqCst);
        if finished != self.seen_finished {
            self.seen_finished = finished;
            self.progressed();
        }
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn stall_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "http: connection closed: no progress within idle_timeout, or older than max_connection_age",
        )
    }

    fn pending_or_stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.stalled(cx) {
            Poll::Ready(Err(Self::stall_error()))
        } else {
            Poll::Pending
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.pending_or_stalled(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.pending_or_stalled(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.pending_or_stalled(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_flush(cx) {
            Poll::Pending => this.pending_or_stalled(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_shutdown(cx) {
            Poll::Pending => this.pending_or_stalled(cx),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair: the server side guarded with `limits`, and the client side.
    async fn pair(limits: Limits) -> (GuardedIo, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let mut g = Guarded::new(l, limits);
        let (io, _) = g.accept().await;
        (io, client)
    }

    fn limits(idle_ms: u64, age_ms: u64) -> Limits {
        Limits {
            max_connections: 4,
            idle_timeout: Duration::from_millis(idle_ms),
            max_age: Duration::from_millis(age_ms),
        }
    }

    #[tokio::test]
    async fn a_silent_connection_fails_its_read_after_the_idle_timeout() {
        let (mut io, _client) = pair(limits(200, 60_000)).await;
        let mut buf = [0u8; 16];
        let e = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf))
            .await
            .expect("the read failed on its own")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn bytes_keep_a_connection_open_until_its_age_runs_out() {
        let (mut io, mut client) = pair(limits(400, 1_500)).await;
        let trickle = tokio::spawn(async move {
            for _ in 0..40 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut got = 0;
        let mut buf = [0u8; 16];
        let end = loop {
            match io.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => got += n,
                Err(e) => break Some(e.kind()),
            }
        };
        trickle.abort();
        assert_eq!(end, Some(io::ErrorKind::TimedOut));
        // A byte per 100 ms against a 400 ms idle timeout: only the age ended it.
        assert!(got >= 5, "read {got} bytes before the connection ended");
    }

    #[tokio::test]
    async fn a_request_being_handled_is_not_cut_and_the_idle_clock_restarts_after_it() {
        let (mut io, _client) = pair(limits(150, 60_000)).await;
        let handling = io.activity.begin();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(600), io.read(&mut buf)).await;
        assert!(read.is_err(), "the read ended while a request was handled");
        drop(handling);
        let e = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf))
            .await
            .expect("the read failed on its own")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn the_listener_holds_at_most_max_connections() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut g = Guarded::new(
            l,
            Limits {
                max_connections: 1,
                ..limits(60_000, 60_000)
            },
        );
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let (first, _) = g.accept().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(300), g.accept())
                .await
                .is_err(),
            "a second connection was accepted while the first was open"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(30), g.accept())
            .await
            .expect("the second connection was accepted once the first closed");
    }
}
