//! `kadmesh keygen` and `kadmesh id`.

use std::process::ExitCode;

use super::{CliResult, IdArgs, KeygenArgs};
use crate::identity::Keypair;

/// Generates a key, writes it if asked, and prints the node id.
pub fn keygen(args: &KeygenArgs) -> CliResult {
    let keypair = Keypair::random();
    if let Some(path) = &args.out {
        keypair.write_key_file(path)?;
    }
    println!("{}", keypair.node_id());
    Ok(ExitCode::SUCCESS)
}

/// Prints the node id of an existing key file.
pub fn id(args: &IdArgs) -> CliResult {
    let keypair = Keypair::load(&args.key)?;
    println!("{}", keypair.node_id());
    Ok(ExitCode::SUCCESS)
}
