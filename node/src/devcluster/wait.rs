//! Waiting, bounded, for local nodes to answer and to join.

use std::time::{Duration, Instant};

use anyhow::bail;
use tresor_client::Credentials;
use tresor_proto::v1 as pb;

use crate::raft::voters::MAX_VOTERS;

/// Polls a node's `NodeInfo` until it answers or `timeout` passes (with the
/// process-wide default credentials).
pub async fn wait_until_answers(endpoint: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_until_answers_with(endpoint, &tresor_client::default_credentials(), timeout).await
}

/// Like [`wait_until_answers`], with `credentials`.
pub async fn wait_until_answers_with(
    endpoint: &str,
    credentials: &Credentials,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match tresor_client::admin_with(endpoint, credentials).await {
            Ok(mut admin) => match admin.node_info(pb::NodeInfoRequest {}).await {
                Ok(_) => return Ok(()),
                // A refusal is an answer: the node is up.
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    ) =>
                {
                    return Ok(())
                }
                Err(s) => s.message().to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("{endpoint} did not answer within {timeout:?}: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `status` on `endpoint` until there is a leader, every id in `ids`
/// is a member, and `min(5, n)` of them vote (with the process-wide default
/// credentials).
pub async fn wait_for_members(
    endpoint: &str,
    ids: &[u64],
    timeout: Duration,
) -> anyhow::Result<pb::StatusResponse> {
    wait_for_members_with(
        endpoint,
        ids,
        &tresor_client::default_credentials(),
        timeout,
    )
    .await
}

/// Like [`wait_for_members`], with `credentials`.
pub async fn wait_for_members_with(
    endpoint: &str,
    ids: &[u64],
    credentials: &Credentials,
    timeout: Duration,
) -> anyhow::Result<pb::StatusResponse> {
    let deadline = Instant::now() + timeout;
    let want_voters = ids.len().min(MAX_VOTERS);
    loop {
        let mut last = String::from("no answer");
        if let Ok(mut admin) = tresor_client::admin_with(endpoint, credentials).await {
            match admin.status(pb::StatusRequest { local: false }).await {
                Ok(r) => {
                    let status = r.into_inner();
                    let members = ids.iter().all(|id| {
                        status
                            .nodes
                            .iter()
                            .any(|n| n.id == *id && (n.role == "voter" || n.role == "learner"))
                    });
                    let voters = status.nodes.iter().filter(|n| n.role == "voter").count();
                    if status.leader_id.is_some() && members && voters == want_voters {
                        return Ok(status);
                    }
                    last = format!(
                        "leader {:?}, {} nodes, {voters} voters",
                        status.leader_id,
                        status.nodes.len()
                    );
                }
                Err(s) => last = s.message().to_string(),
            }
        }
        if Instant::now() >= deadline {
            bail!("cluster did not settle within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
