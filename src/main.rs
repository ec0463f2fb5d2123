//! `tandem`: the one binary. It parses the command line, builds configuration, and hands off to
//! the library crates; no logic lives here that a test would want to reach.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    tandem_crypto::install_crypto_provider();
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tandem: error: {error:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
