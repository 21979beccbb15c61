//! What security costs: the same loads on a secure and an insecure
//! cluster in one run, alternating rounds.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use tresor_client::Credentials;
use tresor_node::devcluster::{LocalCluster, LocalClusterSpec, NodeLauncher};
use tresor_proto::v1 as pb;

use super::*;

/// Alternating rounds of the secure and the insecure run, so drift on a
/// noisy machine hits both alike.
pub(super) const SECURITY_ROUNDS: usize = 2;

/// One workload of the security comparison.
pub(super) struct SecurityRow {
    pub(super) op: &'static str,
    pub(super) clients: usize,
    pub(super) secure: f64,
    pub(super) insecure: f64,
}

/// PUT and GET of 64 MiB objects on the secure local cluster and on a
/// second, insecure six-node cluster (plaintext, no authentication, no
/// encryption at rest; the audit log is on in both), in alternating rounds.
pub(super) async fn security_cost(
    dir: &std::path::Path,
    secure_endpoints: &[String],
    secure: &Credentials,
    run_id: &str,
) -> anyhow::Result<Vec<SecurityRow>> {
    eprintln!("starting an insecure six-node cluster for comparison");
    let launcher = NodeLauncher {
        program: std::env::current_exe().context("cannot find own executable")?,
        args: vec!["node".into(), "serve".into()],
    };
    let spec = LocalClusterSpec {
        http: false,
        security: tresor_node::devcluster::DevSecurity::Insecure,
        ..LocalClusterSpec::default()
    };
    let mut cluster = LocalCluster::create(&dir.join("insecure"), spec, launcher)?;
    let plain = Credentials::none();
    let result = async {
        cluster.start_all(Duration::from_secs(30)).await?;
        cluster.form(Duration::from_secs(60)).await?;
        let insecure_endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.endpoint()).collect();
        tresor_client::admin_with(&insecure_endpoints[0], &plain)
            .await?
            .create_bucket(pb::CreateBucketRequest {
                name: "bench".into(),
                data: 4,
                parity: 2,
                retention: String::new(),
            })
            .await
            .map_err(|s| anyhow!("create bucket bench: {}", s.message()))?;
        let mut rows: Vec<SecurityRow> = Vec::new();
        for round in 0..SECURITY_ROUNDS {
            for clients in [1, 4] {
                let run = format!("{run_id}-sec-{round}-{clients}");
                let per_client = 2;
                eprintln!("security cost, round {}: {clients} client(s)", round + 1);
                let mut figures = Vec::new();
                for (creds, eps) in [
                    (&plain, &insecure_endpoints[..]),
                    (secure, secure_endpoints),
                ] {
                    let put = run_workload(creds, eps, "put", 64 * MIB, clients, per_client, &run)
                        .await?;
                    let get = run_workload(creds, eps, "get", 64 * MIB, clients, per_client, &run)
                        .await?;
                    figures.push((put.mb_per_s, get.mb_per_s));
                }
                let (insecure, secure) = (figures[0], figures[1]);
                for (op, s, i) in [("put", secure.0, insecure.0), ("get", secure.1, insecure.1)] {
                    match rows.iter_mut().find(|r| r.op == op && r.clients == clients) {
                        Some(r) => {
                            r.secure = r.secure.max(s);
                            r.insecure = r.insecure.max(i);
                        }
                        None => rows.push(SecurityRow {
                            op,
                            clients,
                            secure: s,
                            insecure: i,
                        }),
                    }
                }
            }
        }
        anyhow::Ok(rows)
    }
    .await;
    cluster.stop_all(Duration::from_secs(10)).await;
    result
}
