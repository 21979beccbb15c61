//! tresor node: the server and the operator command line.
//!
//! Layers, each using only those below it (kept true by a test that reads
//! the source tree, `layering.rs`):
//!
//! - `cli` — the operator command line; `devcluster` — local clusters of node
//!   processes (for `tresor-node dev`, the demo and the tests);
//! - `server` — wires a node together: data dir, Raft, the gRPC server;
//! - `api` — gRPC services, with authentication, authorisation and the
//!   audit sink;
//! - `workers` — background work: liveness, scrub, repair, GC, uploads;
//! - `objects` — the data plane: write, read and repair paths;
//! - `raft` — consensus: the cluster handle, membership, linearizable
//!   reads, the sled-backed log and state machine, the transport;
//! - `crypto` (keys, sealing) and `tls` (certificates, identities);
//! - `meta` (the replicated model and its store) and `shards` (the local
//!   shard files);
//! - `ids` (object, shard and digest names), `config`, `erasure`,
//!   `placement`, `metrics`, `rate`, `crash` — leaves.

#![deny(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod crash;
pub mod crypto;
pub mod devcluster;
pub mod erasure;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod ids;
pub mod meta;
pub mod metrics;
pub mod objects;
pub mod placement;
pub mod raft;
pub mod rate;
pub mod server;
pub mod shards;
pub mod tls;
pub mod workers;

#[cfg(test)]
mod layering;
