//! What the gRPC port accepts: a bound on connections in all and per peer
//! address, an idle timeout on every connection, and a pause instead of a
//! busy loop when accepting fails (out of file descriptors). A node decides
//! how much it takes on; a flood of half-open connections cannot exhaust
//! it or spin it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits on accepted connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once, in all.
    pub total: usize,
    /// Connections open at once from one IP address.
    pub per_peer: usize,
    /// A connection on which nothing arrives for this long is closed. Live
    /// peers answer the server's HTTP/2 keepalive pings well within it.
    pub idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            total: 4096,
            per_peer: 512,
            idle: Duration::from_secs(120),
        }
    }
}

/// Pause after a failed accept (such as running out of file descriptors),
/// so the loop waits for connections to close instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Default)]
struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

/// One peer address's share of the connections, given back on drop.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(counts: &Arc<PeerCounts>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = counts.0.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counts.0.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

/// An accepted connection holding its place in the limits, closed when
/// nothing arrives on it for the idle timeout.
pub struct GuardedStream {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _total: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

impl Connected for GuardedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connections `listener` accepts within `limits`, with Nagle off.
/// Connections over a limit are closed at once; failed accepts pause the
/// loop briefly.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<GuardedStream>> {
    let total = Arc::new(Semaphore::new(limits.total));
    let peers = Arc::new(PeerCounts::default());
    TcpListenerStream::new(listener).filter_map(move |accepted| {
        let total = total.clone();
        let peers = peers.clone();
        async move {
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    return None;
                }
            };
            // The server's own tcp_nodelay applies only to listeners it
            // binds; without it Nagle's algorithm meets delayed ACKs and
            // small responses stall for 40 ms.
            let _ = stream.set_nodelay(true);
            let ip = stream.peer_addr().ok()?.ip();
            let Ok(permit) = total.try_acquire_owned() else {
                tracing::warn!(peer = %ip, limit = limits.total, "connection refused: too many connections");
                return None;
            };
            let Some(slot) = PeerSlot::take(&peers, ip, limits.per_peer) else {
                tracing::warn!(peer = %ip, limit = limits.per_peer, "connection refused: too many from this address");
                return None;
            };
            Some(Ok(GuardedStream {
                inner: stream,
                idle: limits.idle,
                deadline: Box::pin(tokio::time::sleep(limits.idle)),
                _total: permit,
                _peer: slot,
            }))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }

    #[tokio::test]
    async fn a_peer_over_its_limit_is_closed_and_a_freed_slot_is_reused() {
        let (l, addr) = listener().await;
        let limits = ConnectionLimits {
            total: 10,
            per_peer: 2,
            idle: Duration::from_secs(30),
        };
        let mut accepted = Box::pin(incoming(l, limits));
        let a = TcpStream::connect(addr).await.expect("a");
        let b = TcpStream::connect(addr).await.expect("b");
        let first = accepted.next().await.expect("first").expect("ok");
        let _second = accepted.next().await.expect("second").expect("ok");
        // The third is accepted by the kernel and closed by us: reading it
        // gives end of file.
        let mut c = TcpStream::connect(addr).await.expect("c");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            // The stream only moves when polled; poll it for the refusal.
            tokio::select! {
                n = c.read(&mut byte) => n,
                _ = accepted.next() => Ok(usize::MAX),
            }
        })
        .await
        .expect("bounded");
        assert_eq!(read.expect("read"), 0, "over-limit connection closed");
        drop(first);
        drop(a);
        let _d = TcpStream::connect(addr).await.expect("d");
        let again = tokio::time::timeout(Duration::from_secs(5), accepted.next())
            .await
            .expect("bounded");
        assert!(matches!(again, Some(Ok(_))), "slot given back on drop");
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        let (l, addr) = listener().await;
        let limits = ConnectionLimits {
            total: 10,
            per_peer: 10,
            idle: Duration::from_secs(60),
        };
        let mut accepted = Box::pin(incoming(l, limits));
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let mut server = accepted.next().await.expect("one").expect("ok");
        let mut buf = [0u8; 8];
        // Bytes keep arriving: reads succeed past the idle time in total.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(40)).await;
            client.write_all(b"x").await.expect("write");
            let n = server.read(&mut buf).await.expect("read");
            assert_eq!(n, 1);
        }
        // Then silence: the read fails with a timeout.
        let silent = server.read(&mut buf).await;
        assert_eq!(
            silent.expect_err("idle").kind(),
            io::ErrorKind::TimedOut,
            "silent connection closed"
        );
    }
}
