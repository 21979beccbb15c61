//! Resumable upload sessions: who may add the next part, the parts made
//! durable, and what their commit must match.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use crate::meta::Writes;
use crate::meta::{audit::AuditRecord, Command, MetaError, ObjectManifest, UploadRecord};

impl MetaStore {
    pub(super) fn apply_sessions(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::ClaimUpload {
                object_id,
                writer,
                touched_ms,
            } => {
                let mut upload = match self.open_session(object_id)? {
                    Ok(u) => u,
                    Err(e) => return Ok(Err(e)),
                };
                let Some(session) = upload.session.as_mut() else {
                    return Ok(Err(not_a_session(object_id)));
                };
                session.writer = *writer;
                upload.touched_ms = upload.touched_ms.max(*touched_ms);
                batch.insert(upload_key(object_id), encode(&upload));
            }
            Command::RecordPart {
                object_id,
                writer,
                part,
                segment,
                hash,
                finished,
                touched_ms,
            } => {
                let mut upload = match self.open_session(object_id)? {
                    Ok(u) => u,
                    Err(e) => return Ok(Err(e)),
                };
                let Some(session) = upload.session.as_mut() else {
                    return Ok(Err(not_a_session(object_id)));
                };
                let refuse = |m: String| Ok(Err(MetaError::FailedPrecondition(m)));
                if session.writer != *writer {
                    return refuse(format!(
                        "upload {object_id} was taken over by another UploadParts call"
                    ));
                }
                if session.finished {
                    return refuse(format!(
                        "upload {object_id} already ended with a short part"
                    ));
                }
                if *part as usize != session.parts.len() {
                    return refuse(format!(
                        "upload {object_id} expects part {}, not {part}",
                        session.parts.len()
                    ));
                }
                let added = hash.bytes().checked_sub(session.durable_bytes());
                let fits = match added {
                    Some(n) if *finished => n > 0 && n <= session.part_bytes,
                    Some(n) => n == session.part_bytes,
                    None => false,
                };
                let width = (session.data + session.parity) as usize;
                if !fits || segment.shards.len() != width {
                    return Ok(Err(MetaError::InvalidArgument(format!(
                        "part {part} of upload {object_id} does not fit its session"
                    ))));
                }
                session.parts.push(segment.clone());
                session.hash = hash.clone();
                session.finished = *finished;
                upload.touched_ms = upload.touched_ms.max(*touched_ms);
                batch.insert(upload_key(object_id), encode(&upload));
            }
            _ => return Ok(Err(super::misrouted("sessions"))),
        }
        Ok(Ok(()))
    }

    /// The open upload with this id, or why there is none.
    fn open_session(
        &self,
        object_id: &crate::meta::ObjectId,
    ) -> Result<Result<UploadRecord, MetaError>, StoreError> {
        Ok(match self.upload(object_id)? {
            Some(upload) => Ok(upload),
            None => Err(MetaError::NotFound(format!(
                "upload {object_id} is not open (completed, aborted or expired)"
            ))),
        })
    }

    /// Why `manifest` may not complete `upload`'s session: it must be the
    /// session's parts, bytes and hash, committed by its principal.
    pub(super) fn session_refusal(
        upload: &UploadRecord,
        manifest: &ObjectManifest,
        audit: Option<&AuditRecord>,
    ) -> Option<MetaError> {
        let session = upload.session.as_ref()?;
        let same = manifest.segments == session.parts
            && manifest.size == session.durable_bytes()
            && manifest.sha256 == hex::encode(session.hash.finish())
            && (manifest.data, manifest.parity) == (session.data, session.parity)
            && manifest.block_size == session.block_size
            && manifest.segment_stripes == session.segment_stripes;
        if !same {
            return Some(MetaError::FailedPrecondition(format!(
                "upload {} changed while it was being completed; complete it again",
                manifest.object_id
            )));
        }
        if audit.map(|a| a.principal.as_str()) != Some(session.principal.as_str()) {
            return Some(MetaError::FailedPrecondition(format!(
                "upload {} belongs to {}; only it may complete the upload",
                manifest.object_id, session.principal
            )));
        }
        None
    }
}

fn not_a_session(object_id: &crate::meta::ObjectId) -> MetaError {
    MetaError::FailedPrecondition(format!(
        "upload {object_id} is a single-stream Put, not a resumable session"
    ))
}
