//! `tandem backup` and `tandem restore`: argument parsing and printing; the work is
//! `tandem_store::backup` (run by the node itself when it serves) and `tandem_node::restore`.

use crate::output::outln;
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tandem_repl::ops::Operation;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup: a new directory (replicated.db, files/, manifest.json).
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Replace an existing backup at --to.
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup to restore (the directory `tandem backup --to` wrote).
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// The new node's name (letters, digits, - _ .).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    listeners: crate::cli::ListenerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run_backup(data_dir: &Path, args: BackupArgs) -> Result<ExitCode> {
    // The node that writes it may run in another working directory.
    let to = std::path::absolute(&args.to)
        .with_context(|| format!("--to {}: cannot resolve the path", args.to.display()))?;
    let operation = Operation::Backup {
        to: to.display().to_string(),
        force: args.force,
    };
    crate::ha::perform(data_dir, operation, args.json)
}

/// Text output of a finished backup.
pub fn print_result(result: &serde_json::Value) {
    let field = |key: &str| match result.get(key) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => "-".into(),
    };
    outln!(
        "Backup of {} written to {} and verified",
        field("sourceNode"),
        field("path")
    );
    outln!("  position           {}", field("positionSeq"));
    outln!("  content SHA-256    {}", field("contentSha256"));
    outln!(
        "  database           {} bytes, {} tables",
        field("databaseBytes"),
        field("tables")
    );
    outln!(
        "  app files          {} ({} bytes)",
        field("files"),
        field("filesBytes")
    );
    outln!(
        "Restore it as a new node with: tandem restore --from {} --data-dir NEWDIR --name NAME",
        field("path")
    );
}

pub fn run_restore(data_dir: PathBuf, args: RestoreArgs) -> Result<ExitCode> {
    let options = tandem_node::RestoreOptions {
        backup: args.from,
        data_dir,
        name: args.name.clone(),
        service_addr: args.listeners.service_addr,
        system_manager_addr: args.listeners.sysmgr_addr,
        replication_addr: args.listeners.ssh_addr,
    };
    let report = match tandem_node::restore(&options) {
        Ok(report) => report,
        Err(tandem_node::NodeError::Usage(message)) => {
            eprintln!("tandem: error: {message}");
            return Ok(ExitCode::from(crate::cli::EXIT_USAGE));
        }
        Err(error) => return Err(error.into()),
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dataDir": report.data_dir,
                "nodeId": report.node_id,
                "name": args.name,
                "sourceNode": report.source_node,
                "positionSeq": report.position_seq,
                "contentSha256": report.content_sha256,
                "sshPublicKey": report.ssh_public_key,
                "serverCertificateSha256": report.server_certificate_sha256,
            }))
            .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = report.data_dir.display();
    outln!(
        "Restored node {:?} in {dir} (node id {}) from a backup of {}",
        args.name,
        report.node_id,
        report.source_node
    );
    outln!("  position             {}", report.position_seq);
    outln!("  content SHA-256      {}", report.content_sha256);
    outln!(
        "  server certificate   SHA-256 {} (the fleet's, from the backup)",
        report.server_certificate_sha256
    );
    outln!("  SSH public key       {} (new)", report.ssh_public_key);
    outln!("HA is disabled and Trusted Hosts are empty: this is a new node with the fleet's data.");
    outln!(
        "Users and passwords are those of the backup. Start it with: tandem serve --data-dir {dir}"
    );
    Ok(ExitCode::SUCCESS)
}
