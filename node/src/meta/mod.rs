//! The cluster's metadata model and its storage in sled.
//!
//! Everything here is replicated: a [`Command`] is proposed through Raft and
//! applied on every node by [`MetaStore::apply`], which must be deterministic
//! (times and ids are chosen by the proposer and carried in the command).
//! Validation that depends on the current state (a bucket that exists, an id
//! in use) happens at apply time, so two racing proposals cannot both win.

mod access;
pub mod audit;
pub mod codec;
mod command;
pub mod database;
mod encryption;
pub mod epochs;
mod health;
mod model;
mod object;
pub mod retention;
mod session;
mod store;
mod writes;

pub use access::{is_s3_key_id, Grant, Principal, Role, S3Key, Token, BOOTSTRAP_ADMIN};
pub use command::{Command, ExpiryItem, KeyRewrap, RecordedReceipt, UploadRecord};
pub use encryption::{ObjectEncryption, WrappedKey, TAG_BYTES};
pub use epochs::{epoch_class, epoch_key_id, epoch_of, KeyEpoch};
pub use health::{is_healthy, segment_health, serves, SegmentHealth, Survey};
pub use model::{
    now_ms, validate_bucket_name, validate_principal_name, validate_scheme, Bucket, CommandResult,
    MetaError, NodeRecord, NodeState,
};
pub use object::{
    validate_attributes, validate_key, Digest, ObjectId, ObjectManifest, SegmentManifest,
    ShardLocation, StripeRef,
};
pub use retention::{Hold, HoldTarget, ObjectRetention, ReceiptDue, RetentionPolicy, Tombstone};
pub use session::{HashState, UploadSession};
pub use store::{
    DueObject, EpochObject, HoldFilter, MetaStore, ObjectCursor, PlacedShard, StoreError,
    StoredReceipt,
};
pub use writes::Writes;
