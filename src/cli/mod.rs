//! The `kadmesh` command line: argument parsing and the subcommands. `main.rs` only calls [`main`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod bench;
pub mod config;
mod keys;
mod localnet;
mod node;

/// A Kademlia-DHT-backed, authenticated peer-to-peer overlay node.
#[derive(Parser, Debug)]
#[command(name = "kadmesh", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a new identity key and print its node id.
    Keygen(KeygenArgs),
    /// Print the node id of a key file.
    Id(IdArgs),
    /// Run a node until SIGINT/SIGTERM; prints its descriptor as the first line of stdout.
    Node(node::NodeArgs),
    /// Run a benchmark scenario, print (and optionally write) its report; exits 1 if its expected
    /// result fails.
    Bench(bench::BenchArgs),
    /// Print the commented default node.toml, or check one.
    Config(config::ConfigArgs),
    /// Run a local test network of N `kadmesh node` processes until Ctrl-C.
    Localnet(localnet::LocalnetArgs),
}

/// Arguments of `kadmesh keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Write the secret key here (mode 0600; refuses to overwrite an existing file).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `kadmesh id`.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The key file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// Parses the arguments, runs the command, and maps failures to a one-line message and exit code 1
/// (2 for bad arguments).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let line = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("kadmesh: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    init_logging();
    let result = match cli.command {
        Command::Keygen(args) => keys::keygen(&args),
        Command::Id(args) => keys::id(&args),
        Command::Node(args) => node::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Config(args) => config::run(args),
        Command::Localnet(args) => localnet::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kadmesh: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A command's failure, printed as one line.
pub type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;
