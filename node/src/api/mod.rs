//! gRPC services, thin: authenticate and authorise the caller (`auth`),
//! validate, call the control plane or the data plane, map errors in one
//! place (`status`), and record the call in the audit log (`audit`).
//! [`MemberGuard`] keeps the internal services (Raft, Shards) to member
//! nodes. The server that hosts them all is built in `server`.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod connections;
mod guard;
mod lifecycle;
pub mod objects;
pub mod refusals;
pub mod s3;
pub mod shards;
pub(crate) mod status;
pub mod uploads;
pub mod views;

pub use guard::{MemberGuard, REMOVAL_GRACE};
pub use status::{
    meta_status, object_status, outcome_of, shard_read_status, shard_status, store_status,
    task_status, to_status,
};
