//! Compiles `proto/kadmesh.proto` with a vendored `protoc`, so a fresh machine needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/kadmesh.proto");
    prost_build::compile_protos(&["proto/kadmesh.proto"], &["proto/"])?;
    Ok(())
}
