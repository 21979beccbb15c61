//! Transport security: the cluster CA, node and client certificates, and
//! who is at the other end of a connection.

/// Who a verified peer certificate says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A node of the cluster (certificate issued with `ca issue --node ID`).
    Node(u64),
    /// A client (certificate issued with `ca issue --client NAME`); the name
    /// is the principal.
    Client(String),
}

/// The identity in the caller's verified certificate, if it presented one.
pub fn peer_identity<T>(_request: &tonic::Request<T>) -> Option<PeerIdentity> {
    None
}
