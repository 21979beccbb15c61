//! tresor's gRPC contract, generated from the `.proto` files in this crate.
//!
//! `tresor.v1` is the public API (clients in any language generate stubs from
//! the same files); `tresor.internal.v1` is node-to-node traffic only.

#![allow(missing_docs)]
#![allow(clippy::all)]

pub mod codec;

/// Public services.
pub mod v1 {
    tonic::include_proto!("tresor.v1");
}

/// Node-to-node services.
pub mod internal {
    /// Version 1 of the internal services.
    pub mod v1 {
        tonic::include_proto!("tresor.internal.v1");
    }
}

/// Encoded `FileDescriptorSet` of every service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tresor_descriptor");

/// Encoded `FileDescriptorSet` of the public services (`tresor.v1`) only:
/// what gRPC server reflection shows.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("tresor_public_descriptor");
