//! `tresor-node nodes`: add, remove and drain nodes.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::json;
use tresor_proto::v1 as pb;

use super::{admin, node_json, print_json, rpc_error, Output};

/// `nodes` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodesCmd {
    /// Add a node: it joins as a learner and becomes a voter while the
    /// cluster has fewer than five.
    Add {
        /// The node's id (from its config; never reused).
        #[arg(long)]
        id: u64,
        /// host:port of the node's gRPC listener.
        #[arg(long)]
        addr: String,
        /// The node's zone (must match its config).
        #[arg(long)]
        zone: String,
        /// Bytes offered for shards (default: the node's own figure).
        #[arg(long)]
        capacity: Option<u64>,
    },
    /// Remove a node (voter, learner or the leader). Its id is never reused.
    /// Refused while the node holds shards, unless --force.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Remove it even though it holds shards: they are rebuilt from the
        /// other shards of their stripes.
        #[arg(long)]
        force: bool,
    },
    /// Move every shard off a node, so it can be removed.
    Drain {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
}

/// Runs one `nodes` command through `endpoint`.
pub async fn run(command: NodesCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    match command {
        NodesCmd::Add {
            id,
            addr,
            zone,
            capacity,
        } => {
            let r = admin(endpoint)
                .await?
                .add_node(pb::AddNodeRequest {
                    id,
                    addr,
                    zone,
                    capacity: capacity.unwrap_or(0),
                })
                .await
                .map_err(|s| rpc_error("nodes add", s))?
                .into_inner();
            let node = r.node.ok_or_else(|| anyhow!("nodes add: empty answer"))?;
            match output {
                Output::Json => print_json(node_json(&node)),
                Output::Table => println!(
                    "added node {} ({}, zone {}) as {}",
                    node.id, node.addr, node.zone, node.role
                ),
            }
        }
        NodesCmd::Remove { id, force } => {
            admin(endpoint)
                .await?
                .remove_node(pb::RemoveNodeRequest { id, force })
                .await
                .map_err(|s| rpc_error("nodes remove", s))?;
            match output {
                Output::Json => print_json(json!({"removed": id})),
                Output::Table => println!("removed node {id}"),
            }
        }
        NodesCmd::Drain { id } => {
            admin(endpoint)
                .await?
                .drain_node(pb::DrainNodeRequest { id })
                .await
                .map_err(|s| rpc_error("nodes drain", s))?;
            match output {
                Output::Json => print_json(json!({"draining": id})),
                Output::Table => println!(
                    "node {id} is draining; `tresor-node status` shows its shards going to zero"
                ),
            }
        }
    }
    Ok(())
}
