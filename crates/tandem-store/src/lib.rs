//! Tandem's storage.
//!
//! - The **replicated database** (`replicated.db`): the fleet and its administration — devices,
//!   users, labels, apps, policies and configurations, commands, settings, events, device
//!   certificates, the device CA and server certificate, admin and System Manager users.
//! - The **node-local store** (`node.db`): what belongs to this machine only and is never
//!   replicated — identity, local settings (HA configuration), the module log.
//! - The **file store** (`files/`): app files named by SHA-256.
//!
//! Every write to the replicated database goes through one writer thread ([`db::Database`]) that
//! commits in groups; model modules are plain functions over a `rusqlite::Connection` so they
//! compose inside that one transaction.

#[macro_use]
pub mod common;
pub mod accounts;
pub mod apps;
pub mod backup;
pub mod changes;
pub mod db;
pub mod devices;
pub mod error;
pub mod events;
pub mod files;
pub mod freeze;
pub mod history;
pub mod labels;
pub mod node_local;
pub mod pki;
pub mod policies;
pub mod schema;
pub mod settings;
pub mod trust;
pub mod users;

pub use common::{Page, PageRequest};
pub use db::{Database, OpenMode};
pub use error::{FieldError, InvalidInput, StoreError, StoreResult};
pub use files::FileStore;
pub use node_local::NodeStore;

/// A read-only connection to the replicated database, for reading its position from a process
/// that must not become a second writer (the CLI while the node runs).
pub fn read_only_replicated(path: &std::path::Path) -> StoreResult<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
        |error| StoreError::Open {
            path: path.to_owned(),
            what: "replicated database",
            reason: error.to_string(),
        },
    )
}

/// Opens (or creates) the replicated database at `path`.
pub fn open_replicated(path: &std::path::Path, mode: OpenMode) -> StoreResult<Database> {
    Database::open(path, schema::REPLICATED, mode)
}
