//! Generates the gRPC code from `roomcast/v1/chat.proto` with protox (pure Rust, no protoc),
//! and writes the encoded descriptors for server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "roomcast/v1/chat.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::Compiler::new(["."])?
        .include_source_info(true)
        .include_imports(true)
        .open_file(proto)?
        .file_descriptor_set();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("roomcast_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors.clone())?;
    // The server's fast path: the same service, whose `Stream` sends `EncodedEvent`s (events
    // encoded once per message and shared by every stream) and whose other messages are the
    // ones above.
    let fast = out.join("fast");
    std::fs::create_dir_all(&fast)?;
    tonic_prost_build::configure()
        .build_client(false)
        .codec_path("crate::LeanCodec")
        .out_dir(&fast)
        .extern_path(".roomcast.v1", "crate::v1")
        .extern_path(".roomcast.v1.StreamEvent", "crate::EncodedEvent")
        .compile_fds(descriptors)?;
    Ok(())
}
