//! Rust client library for tresor.
//!
//! Every connection to a node — from the user CLI, the operator CLI, tools, and
//! from one node to another — is built by [`channel`], so transport settings
//! (HTTP/2 windows, message limits, TLS and credentials) live in one place.
//! A process sets its identity once with [`set_default_credentials`]; the
//! `_with` functions take explicit [`Credentials`] instead.
//!
//! [`objects::Client`] is the object API (put, get, stat, list, delete,
//! verify) with failover across endpoints; [`cli`] is the `tresor` command
//! line built on it.

#![deny(missing_docs)]

pub mod anchor;
pub mod channel;
#[cfg(feature = "cli")]
pub mod cli;
pub mod custody;
pub mod merkle;
pub mod objects;
pub mod receipt;

pub use channel::{
    connect, connect_lazy, connect_lazy_with, connect_with, default_credentials, endpoint_url,
    set_default_credentials, ClientError, Credentials, Transport,
};
pub use objects::{
    code_name, range_to_offset_length, Client, ObjectError, ObjectInfo, OnResume, OnSession,
    Progress, PutOptions, PutResult, ResumablePut, ResumeOptions, UploadSession,
};

/// Generated admin client, re-exported so callers need not depend on the proto crate.
pub type AdminClient = tresor_proto::v1::admin_client::AdminClient<Transport>;

/// Connects an admin client to one node with the default credentials.
pub async fn admin(url: &str) -> Result<AdminClient, ClientError> {
    admin_with(url, &default_credentials()).await
}

/// Connects an admin client to one node with `credentials`. Every call
/// carries the process's admin deadline ([`channel::set_admin_timeout`]).
pub async fn admin_with(url: &str, credentials: &Credentials) -> Result<AdminClient, ClientError> {
    let channel = connect_with(url, credentials).await?;
    Ok(AdminClient::new(channel::transport_with_deadline(
        channel,
        credentials,
        channel::admin_timeout(),
    ))
    .max_decoding_message_size(channel::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(channel::MAX_MESSAGE_BYTES))
}
