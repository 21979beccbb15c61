//! `tresor-node workers`, `scrub --now`, `repair --now`: the background
//! workers of every node.

use serde_json::json;
use tresor_proto::v1 as pb;

use super::{cluster_status, print_json, Output};

/// Prints the workers of every node.
pub async fn list(endpoint: &str, output: Output) -> anyhow::Result<()> {
    let all = every_node_workers(endpoint).await?;
    match output {
            Output::Json => print_json(serde_json::Value::Array(
                all.iter()
                    .flat_map(|r| {
                        r.workers.iter().map(move |w| {
                            json!({
                                "node": r.node_id,
                                "name": w.name,
                                "state": w.state,
                                "progress": w.progress,
                                "counters": w.counters,
                                "last_pass_ms": w.last_pass_ms,
                                "last_error": if w.last_error.is_empty() { None } else { Some(&w.last_error) },
                            })
                        })
                    })
                    .collect(),
            )),
            Output::Table => {
                println!("{:>4}  {:<9} {:<8} PROGRESS", "NODE", "WORKER", "STATE");
                for r in &all {
                    for w in &r.workers {
                        println!("{:>4}  {:<9} {:<8} {}", r.node_id, w.name, w.state, w.progress);
                        if !w.last_error.is_empty() {
                            println!("{:>4}  {:<9} error:   {}", "", "", w.last_error);
                        }
                    }
                }
            }
        }
    Ok(())
}

/// The workers of every node the cluster lists (asking each node).
async fn every_node_workers(endpoint: &str) -> anyhow::Result<Vec<pb::WorkersResponse>> {
    let status = cluster_status(endpoint).await?;
    let mut all = Vec::new();
    for node in &status.nodes {
        match tresor_client::admin(&node.addr).await {
            Ok(mut c) => match c.workers(pb::WorkersRequest {}).await {
                Ok(r) => all.push(r.into_inner()),
                Err(s) => eprintln!("node {}: {}", node.id, s.message()),
            },
            Err(e) => eprintln!("node {}: {e}", node.id),
        }
    }
    Ok(all)
}

/// Starts a pass of worker `name` on every node the cluster lists.
pub async fn run_everywhere(endpoint: &str, name: &str, output: Output) -> anyhow::Result<()> {
    let status = cluster_status(endpoint).await?;
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for node in &status.nodes {
        let result = match tresor_client::admin(&node.addr).await {
            Ok(mut c) => c
                .run_worker(pb::RunWorkerRequest { name: name.into() })
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => started.push(node.id),
            Err(e) => failed.push((node.id, e)),
        }
    }
    match output {
        Output::Json => print_json(json!({
            "worker": name,
            "started_on": started,
            "failed": failed.iter().map(|(id, e)| json!({"node": id, "error": e})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            println!(
                "{name} pass started on nodes {started:?}; follow it with `tresor-node workers`"
            );
            for (id, e) in &failed {
                println!("node {id}: {e}");
            }
        }
    }
    if started.is_empty() {
        anyhow::bail!("{name} could not be started on any node");
    }
    Ok(())
}
