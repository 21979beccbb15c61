//! Rust client library for tresor.
//!
//! Every connection to a node — from the user CLI, the operator CLI, tools, and
//! from one node to another — is built by [`channel`], so transport settings
//! (HTTP/2 windows, message limits, and later TLS) live in one place.
//!
//! [`objects::Client`] is the object API (put, get, stat, list, delete,
//! verify) with failover across endpoints; [`cli`] is the `tresor` command
//! line built on it.

#![deny(missing_docs)]

pub mod channel;
pub mod cli;
pub mod objects;

pub use channel::{connect, connect_lazy, endpoint_url, ClientError};
pub use objects::{
    code_name, range_to_offset_length, Client, ObjectError, ObjectInfo, Progress, PutOptions,
    PutResult,
};

/// Generated admin client, re-exported so callers need not depend on the proto crate.
pub type AdminClient = tresor_proto::v1::admin_client::AdminClient<tonic::transport::Channel>;

/// Connects an admin client to one node.
pub async fn admin(url: &str) -> Result<AdminClient, ClientError> {
    let channel = connect(url).await?;
    Ok(AdminClient::new(channel)
        .max_decoding_message_size(channel::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(channel::MAX_MESSAGE_BYTES))
}
