//! The `kadmesh` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    kadmesh::cli::main()
}
