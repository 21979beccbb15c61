//! Link faults as data: a TCP proxy in front of every node, and a table of
//! what happens to the bytes each node sends to each other node.
//!
//! Every node advertises its proxy's address, so all traffic between nodes
//! crosses a proxy, and opens its own connections from an address of its
//! own ([`Network::source_ip`], the node's `source_ip`), so the proxy knows
//! which node is speaking. A fault applies to one direction of one link —
//! the bytes `from` sends to `to`, on connections either of them opened —
//! and is looked up again for every chunk, so it takes effect at once on
//! connections already open. Clients (the test itself) talk to the nodes'
//! own ports and are not affected.
//!
//! The proxies run on a runtime of their own, so a test that blocks its
//! thread (a CLI call, a sleep) never stalls the cluster's traffic.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What happens to the bytes of one direction of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Delivered at once.
    Pass,
    /// Delivered after this long (in order; throughput is not reduced).
    Delay(Duration),
    /// Connections carrying this direction are closed, new ones refused.
    Drop,
    /// Bytes vanish: connections stay open and nothing arrives, as when a
    /// router drops every packet.
    BlackHole,
}

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The node with this id.
    Node(u64),
    /// Anyone else (a client connecting to a proxy).
    Outside,
}

struct Table {
    faults: Mutex<HashMap<(Peer, Peer), Fault>>,
    /// Bumped on every change, so open connections look again.
    changed: watch::Sender<u64>,
    /// Which node each source address belongs to.
    sources: HashMap<IpAddr, u64>,
}

impl Table {
    fn fault(&self, from: Peer, to: Peer) -> Fault {
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults.get(&(from, to)).copied().unwrap_or(Fault::Pass)
    }

    fn peer_of(&self, addr: SocketAddr) -> Peer {
        match self.sources.get(&addr.ip()) {
            Some(id) => Peer::Node(*id),
            None => Peer::Outside,
        }
    }
}

/// The proxies of one cluster and their fault table. Dropping it stops
/// every proxy.
pub struct Network {
    table: Arc<Table>,
    proxies: HashMap<u64, SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Network {
    /// The source address node `id` connects from: `127.0.1.<id>`.
    pub fn source_ip(id: u64) -> anyhow::Result<IpAddr> {
        match u8::try_from(id) {
            Ok(octet) if octet > 0 && octet < 255 => {
                Ok(IpAddr::V4(Ipv4Addr::new(127, 0, 1, octet)))
            }
            _ => bail!("node id {id} has no proxied source address (1..=254)"),
        }
    }

    /// Starts one proxy on 127.0.0.1 in front of each `(id, listen)` node.
    pub fn start(nodes: &[(u64, SocketAddr)]) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("link-proxy")
            .enable_all()
            .build()
            .context("cannot start the proxies' runtime")?;
        let mut sources = HashMap::new();
        for (id, _) in nodes {
            sources.insert(Self::source_ip(*id)?, *id);
        }
        let table = Arc::new(Table {
            faults: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            sources,
        });
        let mut proxies = HashMap::new();
        for (id, target) in nodes {
            // Bound here, so the address is known at once; served on the
            // proxies' runtime (callers may be inside another runtime).
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a proxy")?;
            listener.set_nonblocking(true)?;
            proxies.insert(*id, listener.local_addr()?);
            let (id, target, table) = (*id, *target, table.clone());
            runtime.spawn(async move {
                if let Ok(listener) = TcpListener::from_std(listener) {
                    accept_loop(listener, id, target, table).await;
                }
            });
        }
        Ok(Self {
            table,
            proxies,
            runtime: Some(runtime),
        })
    }

    /// The proxy's address of node `id` (what the node advertises).
    pub fn proxy(&self, id: u64) -> Option<SocketAddr> {
        self.proxies.get(&id).copied()
    }

    /// Sets what happens to the bytes `from` sends to `to`.
    pub fn set(&self, from: Peer, to: Peer, fault: Fault) {
        let mut faults = self.table.faults.lock().unwrap_or_else(|p| p.into_inner());
        if fault == Fault::Pass {
            faults.remove(&(from, to));
        } else {
            faults.insert((from, to), fault);
        }
        drop(faults);
        self.table
            .changed
            .send_modify(|generation| *generation += 1);
    }

    /// Sets `fault` on both directions between node `a` and node `b`.
    pub fn between(&self, a: u64, b: u64, fault: Fault) {
        self.set(Peer::Node(a), Peer::Node(b), fault);
        self.set(Peer::Node(b), Peer::Node(a), fault);
    }

    /// Cuts node `id` off from every other proxied node, both directions.
    pub fn isolate(&self, id: u64, fault: Fault) {
        for other in self.proxies.keys().copied().filter(|o| *o != id) {
            self.between(id, other, fault);
        }
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.table
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.table
            .changed
            .send_modify(|generation| *generation += 1);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, id: u64, target: SocketAddr, table: Arc<Table>) {
    loop {
        let (inbound, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let from = table.peer_of(addr);
        let to = Peer::Node(id);
        if table.fault(from, to) == Fault::Drop || table.fault(to, from) == Fault::Drop {
            continue;
        }
        let table = table.clone();
        tokio::spawn(async move {
            let Ok(Ok(outbound)) =
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await
            else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            // Either direction ending (end of stream, error, Drop) closes
            // the whole connection.
            tokio::select! {
                _ = pump(in_read, out_write, from, to, table.clone()) => {}
                _ = pump(out_read, in_write, to, from, table) => {}
            }
        });
    }
}

/// Copies one direction, applying the fault of `from → to` to every chunk.
async fn pump(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    from: Peer,
    to: Peer,
    table: Arc<Table>,
) {
    // Delayed chunks wait in this queue with the time they are due, so a
    // delay adds latency without cutting throughput.
    let (queue, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let mut changed = table.changed.subscribe();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if table.fault(from, to) == Fault::Drop {
                return;
            }
            tokio::select! {
                read = read.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let at = match table.fault(from, to) {
                        Fault::Pass => Instant::now(),
                        Fault::Delay(d) => Instant::now() + d,
                        Fault::BlackHole => continue,
                        Fault::Drop => return,
                    };
                    if queue.send((at, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
                changed = changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing in for a node, behind a proxy, reached from
    /// node 2's source address.
    fn echo_behind_proxy() -> anyhow::Result<(Network, std::net::TcpStream)> {
        let echo = std::net::TcpListener::bind("127.0.0.1:0")?;
        let target = echo.local_addr()?;
        std::thread::spawn(move || {
            for conn in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut read = conn;
                    let Ok(mut write) = read.try_clone() else {
                        return;
                    };
                    let _ = std::io::copy(&mut read, &mut write);
                });
            }
        });
        let net = Network::start(&[(1, target), (2, "127.0.0.1:9".parse()?)])?;
        let proxy = net.proxy(1).context("proxy of node 1")?;
        let socket = socket2_connect(Network::source_ip(2)?, proxy)?;
        socket.set_read_timeout(Some(Duration::from_millis(1500)))?;
        Ok((net, socket))
    }

    fn socket2_connect(from: IpAddr, to: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
        // Bind the source address, then connect: what a node with
        // `source_ip` does.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(from, 0))?;
            socket.connect(to).await
        })?;
        Ok(stream.into_std()?)
    }

    fn echo(stream: &mut std::net::TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Write};
        stream.set_nonblocking(false)?;
        stream.write_all(bytes)?;
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn faults_apply_per_direction_and_heal() -> anyhow::Result<()> {
        let (net, mut stream) = echo_behind_proxy()?;
        assert_eq!(echo(&mut stream, b"hello")?, b"hello");

        // Node 2 → node 1 black-holed: nothing comes back.
        net.set(Peer::Node(2), Peer::Node(1), Fault::BlackHole);
        assert!(
            echo(&mut stream, b"lost").is_err(),
            "a black hole lets bytes through"
        );

        // The other direction alone delays but delivers.
        net.heal();
        let (net, mut stream) = echo_behind_proxy()?;
        net.set(
            Peer::Node(1),
            Peer::Node(2),
            Fault::Delay(Duration::from_millis(300)),
        );
        let started = std::time::Instant::now();
        assert_eq!(echo(&mut stream, b"late")?, b"late");
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Drop closes the open connection.
        net.set(Peer::Node(1), Peer::Node(2), Fault::Drop);
        let closed = echo(&mut stream, b"gone");
        assert!(closed.is_err(), "a dropped link still answered: {closed:?}");
        Ok(())
    }
}
