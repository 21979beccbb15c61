//! The audit log: appending to its tail, and sealing the tail's oldest
//! entries into a segment object.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use super::misrouted;
use crate::meta::audit::anchor::{history_leaf, segment_root};
use crate::meta::audit::AUDIT_BUCKET;
use crate::meta::audit::{chain, AuditEntry, AuditRecord, SealedSegment, StoredCheckpoint};
use crate::meta::Writes;
use crate::meta::{Command, MetaError};

impl MetaStore {
    pub(super) fn apply_audit(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::AppendAudit { records } => {
                self.append_audit(records.iter(), batch)?;
                Ok(Ok(()))
            }
            Command::SealAudit { segment } => self.seal_audit(segment, batch),
            Command::RequestCheckpoint => {
                let (head, _) = self.audit_head()?;
                if head > self.checkpoint_wanted()? {
                    batch.insert(AUDIT_CHECKPOINT_WANTED, encode(&head));
                }
                Ok(Ok(()))
            }
            Command::RecordCheckpoint { checkpoint } => self.record_checkpoint(checkpoint, batch),
            _ => Ok(Err(misrouted("audit"))),
        }
    }

    /// Adds `records` to the hash-chained audit log, after its head.
    pub(super) fn append_audit<'a>(
        &self,
        records: impl Iterator<Item = &'a AuditRecord>,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        let (mut seq, mut prev) = self.audit_head()?;
        let mut appended = false;
        for record in records {
            seq += 1;
            let entry = chain(seq, record.clone(), &prev);
            prev = entry.hash.clone();
            batch.insert(audit_key(seq), encode(&entry));
            appended = true;
        }
        if appended {
            batch.insert(AUDIT_HEAD, encode(&(seq, prev)));
        }
        Ok(())
    }

    fn seal_audit(
        &self,
        segment: &SealedSegment,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        let refuse = |why: String| {
            Ok(Err(MetaError::FailedPrecondition(format!(
                "cannot seal audit entries {}..={}: {why}",
                segment.first_seq, segment.last_seq
            ))))
        };
        // A retried proposal whose first attempt committed: done already.
        if self
            .get::<SealedSegment>(&sealed_key(segment.last_seq))?
            .as_ref()
            == Some(segment)
        {
            return Ok(Ok(()));
        }
        let start = self.audit_tail_start()?;
        if segment.first_seq != start || segment.last_seq < segment.first_seq {
            return refuse(format!("the unsealed tail starts at entry {start}"));
        }
        let first = self.audit_entry(segment.first_seq)?;
        let last = self.audit_entry(segment.last_seq)?;
        match (first, last) {
            (Some(first), Some(last))
                if first.prev_hash == segment.prev_hash && last.hash == segment.last_hash => {}
            (Some(_), Some(_)) => return refuse("the hashes differ from the log's".into()),
            _ => return refuse("the log does not hold those entries".into()),
        }
        match self.object(AUDIT_BUCKET, &segment.key)? {
            Some(object) if object.sha256 == segment.sha256 => {}
            Some(_) => return refuse(format!("object {} has another digest", segment.key)),
            None => return refuse(format!("object {} does not exist", segment.key)),
        }
        let ordinal = self.audit_segments()?;
        if segment.ordinal != ordinal {
            return refuse(format!(
                "it would be segment {ordinal}, not {}",
                segment.ordinal
            ));
        }
        // The root is the state's own, over the entries it removes (bounded
        // by `seal_entries`).
        let mut keys = Vec::new();
        let mut entries = Vec::new();
        for kv in self
            .tree()
            .range(audit_key(segment.first_seq)..=audit_key(segment.last_seq))
        {
            let (k, v) = kv?;
            entries.push(super::super::decode::<AuditEntry>(&k, &v)?);
            keys.push(k);
        }
        match segment_root(&entries) {
            Ok(Some(root)) if root == segment.root => {}
            _ => return refuse("its root is not that of the log's entries".into()),
        }
        let Ok(leaf) = history_leaf(segment) else {
            return refuse("its hashes are not SHA-256 in hex".into());
        };
        for (height, index, hash) in tresor_client::merkle::appended(self, ordinal + 1, leaf)? {
            batch.insert(mmr_key(height, index), hash.to_vec());
        }
        for k in keys {
            batch.remove(k);
        }
        batch.insert(sealed_key(segment.last_seq), encode(segment));
        Ok(Ok(()))
    }

    /// Records a signed checkpoint after checking that it states this
    /// state's history (the signature is the leader's: it holds the key).
    fn record_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        let refuse = |why: String| {
            Ok(Err(MetaError::FailedPrecondition(format!(
                "cannot record the checkpoint of {} segments: {why}",
                checkpoint.segments
            ))))
        };
        if self.checkpoint(checkpoint.segments)?.is_some() {
            return Ok(Ok(()));
        }
        if checkpoint.segments == 0 || checkpoint.segments > self.audit_segments()? {
            return refuse(format!("{} are sealed", self.audit_segments()?));
        }
        let Some(last) = self.sealed_segment_of(checkpoint.last_seq)? else {
            return refuse(format!("entry {} is not sealed", checkpoint.last_seq));
        };
        if last.ordinal + 1 != checkpoint.segments || last.last_seq != checkpoint.last_seq {
            return refuse(format!(
                "entry {} does not end segment {}",
                checkpoint.last_seq,
                checkpoint.segments - 1
            ));
        }
        let root = tresor_client::merkle::to_hex(&self.history_root(checkpoint.segments)?);
        let stated =
            serde_json::from_str::<tresor_client::anchor::SignedCheckpoint>(&checkpoint.signed)
                .ok()
                .and_then(|s| {
                    serde_json::from_str::<tresor_client::anchor::CheckpointBody>(&s.body).ok()
                });
        let cluster = self.cluster_id()?.unwrap_or_default();
        match stated {
            Some(b)
                if b.segments == checkpoint.segments
                    && b.last_seq == checkpoint.last_seq
                    && b.last_hash == last.last_hash
                    && b.root == root
                    && checkpoint.root == root
                    && b.made_ms == checkpoint.made_ms
                    && b.cluster_id == cluster => {}
            _ => return refuse("it does not state this cluster's history".into()),
        }
        batch.insert(checkpoint_key(checkpoint.segments), encode(checkpoint));
        Ok(Ok(()))
    }
}
