//! The Raft state machine over the metadata tree.
//!
//! Each log entry is applied as one sled batch that also moves the
//! last-applied log id (and, for membership entries, the membership), so the
//! data and the index that covers it can never disagree. Batches are flushed
//! before `apply` returns.
//!
//! Snapshots are a dump of the tree's key/value pairs in a simple
//! length-prefixed framing; openraft sends them in chunks of
//! [`super::SNAPSHOT_CHUNK_BYTES`].

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{NodeId, StorageError, TypeConfig};
use crate::meta::{CommandResult, MetaStore};

const APPLIED: &[u8] = b"raft/applied";
const MEMBERSHIP: &[u8] = b"raft/membership";
const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_DATA: &[u8] = b"data";
const SNAPSHOT_SEQ: &[u8] = b"seq";

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// The state machine: the metadata tree plus the current snapshot.
#[derive(Clone)]
pub struct StateMachine {
    db: sled::Db,
    meta: MetaStore,
    snapshots: sled::Tree,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_state_machine(&e),
    }
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_state_machine(&e),
    }
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_snapshot(None, &e),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(sm_write)
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(sm_read)
}

/// Malformed snapshot bytes.
#[derive(Debug, thiserror::Error)]
#[error("malformed snapshot: {0}")]
pub struct SnapshotFormatError(&'static str);

/// Key/value pairs of the state machine's tree, as carried in snapshots.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Frames key/value pairs as `u32 len, key, u32 len, value`, big-endian.
pub fn encode_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size: usize = pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Inverse of [`encode_pairs`]; refuses truncated or trailing bytes.
pub fn decode_pairs(mut bytes: &[u8]) -> Result<Pairs, SnapshotFormatError> {
    fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], SnapshotFormatError> {
        if bytes.len() < 4 {
            return Err(SnapshotFormatError("truncated length"));
        }
        let (len, rest) = bytes.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if rest.len() < len {
            return Err(SnapshotFormatError("truncated field"));
        }
        let (field, rest) = rest.split_at(len);
        *bytes = rest;
        Ok(field)
    }
    let mut pairs = Vec::new();
    while !bytes.is_empty() {
        let k = take(&mut bytes)?.to_vec();
        let v = take(&mut bytes)?.to_vec();
        pairs.push((k, v));
    }
    Ok(pairs)
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshotMeta(SnapshotMeta<NodeId, openraft::BasicNode>);

impl StateMachine {
    /// Opens the state machine's trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            db: db.clone(),
            meta: MetaStore::new(db.open_tree("sm")?),
            snapshots: db.open_tree("sm_snapshot")?,
        })
    }

    /// Read access to the metadata for the API.
    pub fn meta(&self) -> MetaStore {
        self.meta.clone()
    }

    fn tree(&self) -> &sled::Tree {
        self.meta.tree()
    }

    fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.tree().get(key).map_err(sm_read)? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    fn dump(&self) -> Result<Pairs, StorageError> {
        self.tree()
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sm_read))
            .collect()
    }
}

/// Builds a snapshot from a copy of the state taken when the builder was made,
/// so applies that happen meanwhile cannot tear it.
pub struct SnapshotBuilder {
    sm: StateMachine,
    copy: Result<StateCopy, StorageError>,
}

struct StateCopy {
    pairs: Pairs,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let copy = match &self.copy {
            Ok(copy) => copy,
            Err(e) => return Err(e.clone()),
        };
        let data = encode_pairs(&copy.pairs);
        let seq = self
            .sm
            .snapshots
            .update_and_fetch(SNAPSHOT_SEQ, |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Some((n + 1).to_be_bytes().to_vec())
            })
            .map_err(snap_err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let snapshot_id = match copy.applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: copy.applied,
            last_membership: copy.membership.clone(),
            snapshot_id,
        };
        store_snapshot(&self.sm, &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

async fn store_snapshot(
    sm: &StateMachine,
    meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    data: &[u8],
) -> Result<(), StorageError> {
    let mut batch = sled::Batch::default();
    batch.insert(SNAPSHOT_META, to_json(&StoredSnapshotMeta(meta.clone()))?);
    batch.insert(SNAPSHOT_DATA, data);
    sm.snapshots.apply_batch(batch).map_err(snap_err)?;
    sm.db.flush_async().await.map_err(snap_err)?;
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        let applied = self.read(APPLIED)?;
        let membership = self.read(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        for entry in entries {
            let mut batch = sled::Batch::default();
            batch.insert(APPLIED, to_json(&Some(entry.log_id))?);
            let result = match &entry.payload {
                EntryPayload::Blank => CommandResult(Ok(())),
                EntryPayload::Normal(command) => {
                    let outcome =
                        self.meta
                            .apply(command, &mut batch)
                            .map_err(|e| StorageError::IO {
                                source: StorageIOError::apply(entry.log_id, &e),
                            })?;
                    CommandResult(outcome)
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    batch.insert(MEMBERSHIP, to_json(&stored)?);
                    CommandResult(Ok(()))
                }
            };
            self.tree().apply_batch(batch).map_err(sm_write)?;
            results.push(result);
        }
        self.db.flush_async().await.map_err(sm_write)?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The copy is taken here, on the state machine's task between
        // applies, so it matches the applied id exactly.
        let mut this = self.clone();
        let copy = match this.applied_state().await {
            Ok((applied, membership)) => self.dump().map(|pairs| StateCopy {
                pairs,
                applied,
                membership,
            }),
            Err(e) => Err(e),
        };
        SnapshotBuilder { sm: this, copy }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let pairs = decode_pairs(&data).map_err(snap_err)?;
        let mut batch = sled::Batch::default();
        for kv in self.tree().iter() {
            let (k, _) = kv.map_err(sm_read)?;
            batch.remove(k);
        }
        for (k, v) in pairs {
            if k != APPLIED && k != MEMBERSHIP {
                batch.insert(k, v);
            }
        }
        batch.insert(APPLIED, to_json(&meta.last_log_id)?);
        batch.insert(MEMBERSHIP, to_json(&meta.last_membership)?);
        self.tree().apply_batch(batch).map_err(sm_write)?;
        store_snapshot(self, meta, &data).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let meta = match self.snapshots.get(SNAPSHOT_META).map_err(sm_read)? {
            Some(v) => from_json::<StoredSnapshotMeta>(&v)?.0,
            None => return Ok(None),
        };
        let data = self
            .snapshots
            .get(SNAPSHOT_DATA)
            .map_err(sm_read)?
            .map(|v| v.to_vec())
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_framing_round_trips_and_refuses_truncation() {
        let pairs = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"".to_vec(), vec![0u8; 300]),
            (b"node/\x00\x01".to_vec(), b"".to_vec()),
        ];
        let bytes = encode_pairs(&pairs);
        assert_eq!(decode_pairs(&bytes).expect("decodes"), pairs);
        for cut in 1..bytes.len() {
            let prefix = &bytes[..cut];
            if let Ok(decoded) = decode_pairs(prefix) {
                // Only cuts on a pair boundary decode, and then to a prefix.
                assert!(pairs.starts_with(&decoded), "cut at {cut}");
                assert!(decoded.len() < pairs.len());
            }
        }
    }

    /// Access control lives in the same tree as everything else, so a
    /// snapshot carries principals, grants and tokens to a node that
    /// installs it.
    #[tokio::test]
    async fn snapshots_carry_principals_grants_and_tokens() {
        use crate::meta::{Command, Grant, NodeRecord, NodeState, Principal, Role, Token};
        let entry = |index: u64, command: Command| Entry::<TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        };
        let node = NodeRecord {
            id: 1,
            addr: "a:1".into(),
            zone: "z".into(),
            capacity: 1,
            state: NodeState::Active,
            added_ms: 5,
            state_since_ms: 5,
            incarnation: String::new(),
        };
        let grant = Grant {
            principal: "alice".into(),
            role: Role::Read,
            bucket: None,
        };
        let token = Token {
            id: "0123456789abcdef".into(),
            principal: "alice".into(),
            secret_sha256: "cd".repeat(32),
            created_ms: 6,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source =
            StateMachine::open(&sled::open(dir.path().join("a")).expect("sled")).expect("open");
        let results = source
            .apply(vec![
                entry(
                    1,
                    Command::InitCluster {
                        cluster_id: "c".into(),
                        node,
                    },
                ),
                entry(
                    2,
                    Command::CreatePrincipal {
                        principal: Principal {
                            name: "alice".into(),
                            created_ms: 6,
                        },
                    },
                ),
                entry(
                    3,
                    Command::Grant {
                        grant: grant.clone(),
                    },
                ),
                entry(
                    4,
                    Command::CreateToken {
                        token: token.clone(),
                    },
                ),
            ])
            .await
            .expect("apply");
        assert!(results.iter().all(|r| r.0.is_ok()), "{results:?}");
        let snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");

        let mut target =
            StateMachine::open(&sled::open(dir.path().join("b")).expect("sled")).expect("open");
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        let meta = target.meta();
        let names: Vec<String> = meta
            .principals()
            .expect("principals")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["admin", "alice"]);
        assert_eq!(meta.grants_of("alice").expect("grants"), vec![grant]);
        assert_eq!(meta.grants_of("admin").expect("grants").len(), 1);
        assert_eq!(meta.token(&token.id).expect("token"), Some(token));
    }
}
