//! Generates the gRPC code with a protoc shipped inside a crate, so a fresh
//! machine needs nothing but the Rust toolchain.

use std::path::PathBuf;

/// The public API, which clients in any language generate stubs from.
const PUBLIC_PROTOS: &[&str] = &["tresor/v1/admin.proto", "tresor/v1/objects.proto"];

const PROTOS: &[&str] = &[
    "tresor/v1/admin.proto",
    "tresor/v1/objects.proto",
    "tresor/internal/v1/raft.proto",
    "tresor/internal/v1/shards.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);
    // Shard blocks travel as `bytes::Bytes`: handed from the codec to the
    // transport and from the transport to the decoder without copies.
    config.bytes([
        ".tresor.internal.v1.ShardWrite",
        ".tresor.internal.v1.ReadBlockReply",
    ]);
    tonic_prost_build::configure()
        .codec_path("crate::codec::TresorCodec")
        .file_descriptor_set_path(out.join("tresor_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["."])?;
    // What reflection shows: the public services only (their code, made
    // again here, is not used).
    let public = out.join("public");
    std::fs::create_dir_all(&public)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);
    tonic_prost_build::configure()
        .out_dir(&public)
        .build_client(false)
        .build_server(false)
        .file_descriptor_set_path(out.join("tresor_public_descriptor.bin"))
        .compile_with_config(config, PUBLIC_PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
