//! The audit log: appending to its tail, and sealing the tail's oldest
//! entries into a segment object.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use super::misrouted;
use crate::meta::audit::{chain, AuditRecord, SealedSegment, AUDIT_BUCKET};
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
        batch.insert(sealed_key(segment.last_seq), encode(segment));
        for kv in self
            .tree()
            .range(audit_key(segment.first_seq)..=audit_key(segment.last_seq))
        {
            let (k, _) = kv?;
            batch.remove(k);
        }
        Ok(Ok(()))
    }
}
