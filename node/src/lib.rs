//! tresor node: the server and the operator command line.
//!
//! Layers, each using only those below it: `api` (gRPC services) uses
//! `cluster` (control-plane operations), which uses `raft` (consensus and
//! storage) and `meta` (the replicated model). `server` wires a node
//! together; `cli` and `dev` are the command line and the local cluster.

#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crash;
pub mod crypto;
pub mod dev;
pub mod erasure;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
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
