//! `tandem users …`: admin users and System Manager local users. Runs through the node's control
//! socket when it runs (one writer), in this process when it is stopped. Passwords come from a
//! file or standard input, never the command line (argv is visible to every user of the machine
//! in `ps` and lands in shell history), and are printed nowhere.

use crate::output::outln;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tandem_repl::ops::{Operation, Secret};
use tandem_store::accounts::AccountRealm;

/// Longest password file read: the longest password accepted plus a line break, with room;
/// a larger file is not a password file.
const PASSWORD_FILE_BYTES_MAX: u64 = 4 * 1024;

pub const USERS_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success
    1  the command failed (the node's data dir cannot be opened; the message says why)
    2  invalid input: a bad user name, a weak password, no such user
    3  refused: the user exists, it is the last user of its realm, or this node is not Active";

const PASSWORD_HELP: &str = "\
PASSWORDS:
    The password is never taken from the command line, where other users of the machine see it
    (ps) and the shell keeps it (history). It is read from --password-file (its first line), or
    else from standard input: at a terminal you are asked twice with echo off; otherwise one
    line is read (`printf '%s\\n' \"$PW\" | tandem users add ops`). It is printed nowhere.

    A password needs at least 8 characters, must not be the user name, only white space, or one
    of the few hundred most common passwords (which attackers try first). A few unrelated words
    make a strong one.";

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// List the users of a realm (admin users by default).
    #[command(after_help = USERS_EXIT_STATUS_HELP)]
    List(ListArgs),

    /// Add a user; its password is read from --password-file or standard input.
    #[command(
        long_about = "Add an admin user (admin portal and REST API), or with --system-manager a \
System Manager local user (port 8443). Run it on the Active node: accounts are replicated, so the \
user reaches the Standby with the next sync; a Standby refuses the change (exit 3) and says to \
make it on the Active node. The change is recorded as an event (who, from where, which user; never the password).\n\n\
User names: letters, digits and - _ . @ (no ':', which HTTP Basic authentication cannot carry).",
        after_help = format!("{PASSWORD_HELP}\n\n{USERS_EXIT_STATUS_HELP}")
    )]
    Add(PasswordArgs),

    /// Remove a user; the last user of a realm cannot be removed.
    #[command(
        long_about = "Remove a user of a realm. The last one is refused: nobody could log in to \
that realm without it (add another first). On the Active node only; recorded as an event.",
        after_help = USERS_EXIT_STATUS_HELP
    )]
    Remove(UserArgs),

    /// Change a user's password (effective at once, on every node after replication).
    #[command(
        long_about = "Change a user's password. The old one stops working at once on this node \
(cached logins are keyed by the stored hash) and on the Standby with the next sync. On the \
Active node only; recorded as an event. This is also how to rotate a password, or regain access \
when it is lost: the control socket needs only access to the data dir.",
        after_help = format!("{PASSWORD_HELP}\n\n{USERS_EXIT_STATUS_HELP}")
    )]
    SetPassword(PasswordArgs),
}

#[derive(Args, Debug)]
pub struct RealmArgs {
    /// Act on the System Manager local users (port 8443) instead of the admin users.
    #[arg(long)]
    system_manager: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl RealmArgs {
    fn realm(&self) -> AccountRealm {
        if self.system_manager {
            AccountRealm::SystemManager
        } else {
            AccountRealm::Admin
        }
    }
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    realm: RealmArgs,
}

#[derive(Args, Debug)]
pub struct UserArgs {
    /// The user name.
    #[arg(value_name = "USER")]
    username: String,
    #[command(flatten)]
    realm: RealmArgs,
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// The user name.
    #[arg(value_name = "USER")]
    username: String,
    /// File holding the password (its first line). Without it, standard input is read.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    realm: RealmArgs,
}

pub fn run(data_dir: &Path, command: UsersCommand) -> Result<ExitCode> {
    let (operation, json) = match command {
        UsersCommand::List(args) => (
            Operation::UsersList {
                realm: args.realm.realm(),
            },
            args.realm.json,
        ),
        UsersCommand::Add(args) => (
            Operation::UsersAdd {
                realm: args.realm.realm(),
                password: read_password(&args)?,
                username: args.username,
            },
            args.realm.json,
        ),
        UsersCommand::Remove(args) => (
            Operation::UsersRemove {
                realm: args.realm.realm(),
                username: args.username,
            },
            args.realm.json,
        ),
        UsersCommand::SetPassword(args) => (
            Operation::UsersSetPassword {
                realm: args.realm.realm(),
                password: read_password(&args)?,
                username: args.username,
            },
            args.realm.json,
        ),
    };
    crate::ha::perform(data_dir, operation, json)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

fn read_password(args: &PasswordArgs) -> Result<Secret> {
    if let Some(path) = &args.password_file {
        let size = std::fs::metadata(path)
            .with_context(|| format!("--password-file: cannot read {}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= PASSWORD_FILE_BYTES_MAX,
            "--password-file: {} holds {size} bytes; a password file holds one line of at most \
             {PASSWORD_FILE_BYTES_MAX} bytes",
            path.display()
        );
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--password-file: cannot read {}", path.display()))?;
        return Ok(Secret(first_line(&text)));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .take(PASSWORD_FILE_BYTES_MAX)
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(Secret(first_line(&line)));
    }
    let first = prompt(&format!("New password for {}: ", args.username))?;
    let again = prompt("Again: ")?;
    anyhow::ensure!(
        first == again,
        "the two passwords differ; nothing was changed"
    );
    Ok(Secret(first))
}

/// Asks at the terminal with echo off (`stty`, restored even when reading fails).
fn prompt(question: &str) -> Result<String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let stty = |setting: &str| {
        std::process::Command::new("stty")
            .arg(setting)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|status| status.success())
    };
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
    }
    eprintln!();
    read.context("cannot read the password from the terminal")?;
    Ok(first_line(&line))
}

/// Text output of a users operation.
pub fn print_result(operation: &Operation, result: &serde_json::Value) {
    let realm = result["realm"].as_str().unwrap_or("admin");
    match operation {
        Operation::UsersList { .. } => {
            let users = result["users"].as_array().cloned().unwrap_or_default();
            if users.is_empty() {
                outln!("No {realm} users.");
                return;
            }
            outln!("{:<40} CREATED", "USER");
            for user in users {
                outln!(
                    "{:<40} {}",
                    user["username"].as_str().unwrap_or("-"),
                    user["createdAt"].as_str().unwrap_or("-")
                );
            }
        }
        Operation::UsersAdd { username, .. } => outln!("Added {realm} user {username}."),
        Operation::UsersRemove { username, .. } => outln!("Removed {realm} user {username}."),
        Operation::UsersSetPassword { username, .. } => {
            outln!("Changed the password of {realm} user {username}.")
        }
        _ => {}
    }
}
