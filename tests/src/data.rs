//! The harness's data-plane side: raw object calls against one node,
//! healing helpers (scrub, repair, redundancy), and small data utilities.

use std::path::PathBuf;
use std::time::Duration;

use tresor_client::{Credentials, Transport};
use tresor_proto::v1 as pb;
use tresor_proto::v1::objects_client::ObjectsClient;

use crate::{spec, wait_for, Harness};

/// Raw object calls against one node, straight on the generated gRPC
/// client, so tests see exactly what the server answers.
impl Harness {
    /// An Objects client to node `id`, with [`Harness::credentials`].
    pub async fn objects(&self, id: u64) -> anyhow::Result<ObjectsClient<Transport>> {
        self.objects_with(id, &self.credentials).await
    }

    /// An Objects client to node `id` presenting `credentials`.
    pub async fn objects_with(
        &self,
        id: u64,
        credentials: &Credentials,
    ) -> anyhow::Result<ObjectsClient<Transport>> {
        let channel = tresor_client::connect_with(&self.endpoint(id), credentials).await?;
        let channel = tresor_client::channel::transport(channel, credentials);
        Ok(ObjectsClient::new(channel)
            .max_decoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES))
    }

    /// Uploads `data` through node `via` in 1 MiB messages.
    pub async fn put(
        &self,
        via: u64,
        bucket: &str,
        key: &str,
        data: &[u8],
    ) -> Result<pb::PutResponse, tonic::Status> {
        self.put_with(via, header(bucket, key), data).await
    }

    /// Uploads `data` with a full header.
    pub async fn put_with(
        &self,
        via: u64,
        header: pb::PutHeader,
        data: &[u8],
    ) -> Result<pb::PutResponse, tonic::Status> {
        let mut client = self
            .objects(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut messages = vec![pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header)),
        }];
        messages.extend(data.chunks(1024 * 1024).map(|c| pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(c.to_vec())),
        }));
        Ok(client
            .put(futures::stream::iter(messages))
            .await?
            .into_inner())
    }

    /// Reads `[offset, offset + length)` (or all) through node `via`.
    pub async fn get(
        &self,
        via: u64,
        bucket: &str,
        key: &str,
        offset: Option<u64>,
        length: Option<u64>,
    ) -> Result<(pb::ObjectInfo, Vec<u8>), tonic::Status> {
        let mut client = self
            .objects(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut stream = client
            .get(pb::GetRequest {
                bucket: bucket.into(),
                key: key.into(),
                offset,
                length,
            })
            .await?
            .into_inner();
        let (info, range) = match stream.message().await? {
            Some(pb::GetResponse {
                msg: Some(pb::get_response::Msg::Info(info)),
                range,
            }) => (info, range),
            other => {
                return Err(tonic::Status::internal(format!(
                    "first message was {other:?}"
                )))
            }
        };
        let mut data = Vec::new();
        while let Some(m) = stream.message().await? {
            match m.msg {
                Some(pb::get_response::Msg::Data(d)) => data.extend_from_slice(&d),
                other => return Err(tonic::Status::internal(format!("unexpected {other:?}"))),
            }
        }
        // The first message announces exactly the bytes that came.
        let sent = pb::ByteRange {
            offset: offset.unwrap_or(0),
            length: data.len() as u64,
        };
        if range.as_ref() != Some(&sent) {
            return Err(tonic::Status::internal(format!(
                "the first message announced {range:?}; {sent:?} came"
            )));
        }
        Ok((info, data))
    }

    /// Stat through node `via`.
    pub async fn stat(
        &self,
        via: u64,
        bucket: &str,
        key: &str,
    ) -> Result<pb::ObjectInfo, tonic::Status> {
        let mut client = self
            .objects(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(client
            .stat(pb::StatRequest {
                bucket: bucket.into(),
                key: key.into(),
            })
            .await?
            .into_inner())
    }

    /// Every shard file under node `id`'s data dir.
    pub fn shard_files(&self, id: u64) -> Vec<PathBuf> {
        files_under(&self.data_dir(id).join("shards"))
    }

    /// The first `limit` entries of the audit log as node `via` reads it.
    pub async fn audit_log(&self, via: u64, limit: u32) -> anyhow::Result<Vec<pb::AuditEntry>> {
        Ok(self
            .admin(via)
            .await?
            .audit_log(pb::AuditLogRequest {
                limit,
                ..Default::default()
            })
            .await?
            .into_inner()
            .entries)
    }

    /// The cluster's status as node `via` reports it.
    pub async fn status(&self, via: u64) -> anyhow::Result<pb::StatusResponse> {
        Ok(self
            .admin(via)
            .await?
            .status(pb::StatusRequest { local: false })
            .await?
            .into_inner())
    }

    /// Waits until every segment has `data + parity` healthy shards.
    pub async fn wait_fully_redundant(&self, via: u64) -> anyhow::Result<()> {
        wait_for(
            "every segment back to data + parity shards",
            HEAL_TIMEOUT,
            || async {
                let s = self.status(via).await?;
                Ok((s.degraded_segments == 0).then_some(()))
            },
        )
        .await
    }

    /// Starts a pass of worker `name` on node `id` now.
    pub async fn run_worker(&self, id: u64, name: &str) -> anyhow::Result<()> {
        self.admin(id)
            .await?
            .run_worker(pb::RunWorkerRequest { name: name.into() })
            .await?;
        Ok(())
    }

    /// Worker `name`'s status on node `id`.
    pub async fn worker(&self, id: u64, name: &str) -> anyhow::Result<pb::WorkerInfo> {
        let r = self
            .admin(id)
            .await?
            .workers(pb::WorkersRequest {})
            .await?
            .into_inner();
        r.workers
            .into_iter()
            .find(|w| w.name == name)
            .ok_or_else(|| anyhow::anyhow!("node {id} has no {name} worker"))
    }

    /// Runs one scrub pass on every node in `ids` and returns the files it
    /// checked and the errors it found, summed over them.
    pub async fn scrub_everywhere(&self, ids: &[u64]) -> anyhow::Result<(u64, u64)> {
        let mut before = Vec::new();
        for id in ids {
            let w = self.worker(*id, "scrub").await?;
            before.push((counter(&w, "passes"), counter(&w, "errors_found")));
            self.run_worker(*id, "scrub").await?;
        }
        let (mut checked, mut errors) = (0, 0);
        for (id, (passes, errors_before)) in ids.iter().zip(before) {
            let w = wait_for("scrub pass", HEAL_TIMEOUT, || async {
                let w = self.worker(*id, "scrub").await?;
                Ok((counter(&w, "passes") > passes && !in_pass(&w)).then_some(w))
            })
            .await?;
            checked += counter(&w, "files_checked");
            errors += counter(&w, "errors_found") - errors_before;
        }
        Ok((checked, errors))
    }
}

/// How long healing waits (repair, scrub passes) may take in tests.
pub const HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a worker is in a pass (busy or held back by its byte rate).
pub fn in_pass(w: &pb::WorkerInfo) -> bool {
    matches!(w.state.as_str(), "busy" | "throttled")
}

/// A worker's counter (0 when it has none yet).
pub fn counter(w: &pb::WorkerInfo, name: &str) -> u64 {
    w.counters.get(name).copied().unwrap_or(0)
}

/// Every file below `root`, sorted.
pub fn files_under(root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A formed six-node, three-zone cluster of `binary` with bucket `footage`
/// (4+2) and shards of `shard_bytes`, so small test objects span several
/// stripes.
pub async fn data_cluster(binary: &str, shard_bytes: u32) -> anyhow::Result<Harness> {
    let mut s = spec(6, 3);
    s.data = tresor_node::config::DataTuning {
        shard_bytes,
        segment_bytes: 1 << 30,
        ..Default::default()
    };
    data_cluster_with(binary, s).await
}

/// A formed cluster of `spec` with bucket `footage` (4+2).
pub async fn data_cluster_with(
    binary: &str,
    spec: tresor_node::devcluster::LocalClusterSpec,
) -> anyhow::Result<Harness> {
    let mut h = Harness::new(binary, spec).await?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    Ok(h)
}

/// A Put header with only bucket and key.
pub fn header(bucket: &str, key: &str) -> pb::PutHeader {
    pb::PutHeader {
        bucket: bucket.into(),
        key: key.into(),
        ..Default::default()
    }
}

/// Flips every bit of the byte at `offset` in a file, in place.
pub fn flip_byte(path: &std::path::Path, offset: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 0xff;
    f.write_all_at(&b, offset)?;
    f.sync_all()?;
    Ok(())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
