//! A Tandem node's data directory: its layout, its configuration file, `init` and `open`.
//!
//! ```text
//! DIR/
//!   tandem.toml               configuration (written last by init: its presence marks a node)
//!   replicated.db             the replicated database (SQLite, WAL)
//!   node.db                   the node-local store: never replicated
//!   files/sha256/ab/abcd…     app files by content hash
//!   ssh_host_ed25519_key      this node's SSH identity (mode 0600), never replicated
//!   tandem.lock               held by the one process that has the node open (see `lock`)
//! ```

pub mod config;
mod lock;

pub use config::{
    ConfigError, ListenerAddrs, ListenerLimits, Network, NodeConfig, SystemManagerAccess,
};
pub use lock::{DataDirLock, LOCK_FILE};

use std::path::{Path, PathBuf};
use tandem_crypto::{CertificateAuthority, ServerCertificate, SshHostKey};
use tandem_store::accounts::{self, AccountRealm};
use tandem_store::node_local::NodeIdentity;
use tandem_store::{Database, FileStore, NodeStore, OpenMode, StoreError};
use time::OffsetDateTime;

pub const CONFIG_FILE: &str = "tandem.toml";
pub const REPLICATED_DB_FILE: &str = "replicated.db";
pub const NODE_DB_FILE: &str = "node.db";
pub const FILES_DIR: &str = "files";
pub const SSH_HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Length of a generated initial password (about 93 bits from the unambiguous alphabet).
pub const GENERATED_PASSWORD_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Usage(String),
    /// Another process has the node open (see [`DataDirLock`]).
    #[error("{0}")]
    Locked(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] tandem_crypto::PkiError),
    #[error(transparent)]
    Ssh(#[from] tandem_crypto::SshError),
    #[error(transparent)]
    Password(#[from] tandem_crypto::PasswordError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `tandem init` needs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub name: String,
    pub service_addr: String,
    pub system_manager_addr: String,
    pub replication_addr: String,
    pub admin_user: String,
    /// `None`: generate one and report it once.
    pub admin_password: Option<String>,
    /// Extra names for the server certificate (the public host name devices use).
    pub tls_names: Vec<String>,
}

/// What `tandem init` made, for the operator.
#[derive(Clone, Debug)]
pub struct InitReport {
    pub data_dir: PathBuf,
    pub node_id: String,
    pub admin_user: String,
    pub generated_password: Option<String>,
    pub ssh_public_key: String,
    pub ssh_fingerprint: String,
    pub server_certificate_sha256: String,
    pub listeners: ListenerAddrs,
}

/// Creates a node in `options.data_dir`, which must be missing or empty. On failure nothing is
/// left behind that could be mistaken for a node.
pub fn init(options: &InitOptions) -> Result<InitReport, NodeError> {
    let dir = &options.data_dir;
    let config = validate_init(options)?;
    let listeners = config.listener_addrs().map_err(NodeError::Usage)?;
    let existed = dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
        if entries.next().is_some() {
            let what = if dir.join(CONFIG_FILE).exists() {
                "already holds a Tandem node"
            } else {
                "is not empty"
            };
            return Err(NodeError::Usage(format!(
                "{} {what}; refusing to overwrite it. Choose a new or empty directory",
                dir.display()
            )));
        }
    }
    let result = create_node(options, &config, listeners);
    if result.is_err() {
        remove_partial_node(dir, existed);
    }
    result
}

fn validate_init(options: &InitOptions) -> Result<NodeConfig, NodeError> {
    let config = NodeConfig {
        format: config::CONFIG_FORMAT,
        node: config::NodeSection {
            name: options.name.clone(),
            id: uuid::Uuid::new_v4().to_string(),
        },
        listeners: config::Listeners::at(
            &options.service_addr,
            &options.system_manager_addr,
            &options.replication_addr,
        ),
        system_manager: None,
    };
    let mut problems: Vec<String> = config
        .problems()
        .into_iter()
        .map(|problem| {
            problem
                .replace("[listeners] service", "--service-addr")
                .replace("[listeners] system_manager", "--sysmgr-addr")
                .replace("[listeners] replication", "--ssh-addr")
                .replace("[node] node name", "--name")
        })
        .collect();
    if let Err(error) = accounts::validate_username(&options.admin_user) {
        problems.push(format!("--admin-user: {error}"));
    }
    if let Some(password) = &options.admin_password
        && let Err(error) = accounts::validate_password(&options.admin_user, password)
    {
        problems.push(format!("--admin-password-file: {error}"));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(NodeError::Usage(format!(
            "cannot create the node:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

fn remove_partial_node(dir: &Path, existed: bool) {
    if existed {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Names the server certificate covers: the node name, loopback, the listener addresses that
/// are specific, and whatever the operator added.
fn tls_names(options: &InitOptions, listeners: ListenerAddrs) -> Vec<String> {
    let mut names = vec![options.name.clone(), "localhost".into()];
    names.extend(options.tls_names.iter().cloned());
    for addr in [listeners.service, listeners.system_manager] {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    names.push("127.0.0.1".into());
    names.push("::1".into());
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
}

fn create_node(
    options: &InitOptions,
    config: &NodeConfig,
    listeners: ListenerAddrs,
) -> Result<InitReport, NodeError> {
    let dir = &options.data_dir;
    create_private_dir(dir)?;
    let now = OffsetDateTime::now_utc();

    let ssh_key = SshHostKey::generate()?;
    write_private_file(&dir.join(SSH_HOST_KEY_FILE), &ssh_key.private_openssh()?)?;

    let ca =
        CertificateAuthority::generate(&format!("Tandem Device CA {}", &config.node.id[..8]), now)?;
    let server_names = tls_names(options, listeners);
    let server_tls = ServerCertificate::generate(&server_names, now)?;
    let generated_password = options
        .admin_password
        .is_none()
        .then(|| tandem_crypto::random_secret(GENERATED_PASSWORD_CHARS));
    let password = options
        .admin_password
        .clone()
        .or_else(|| generated_password.clone())
        .unwrap_or_default();
    // One hash per realm, each with its own salt: the two tables never hold the same string, so
    // one leaked hash cannot be matched to the other realm's, and a password changed in one
    // realm is visibly different from the other's.
    let admin_hash = tandem_crypto::hash_password(&password)?;
    let system_manager_hash = tandem_crypto::hash_password(&password)?;

    let replicated =
        tandem_store::open_replicated(&dir.join(REPLICATED_DB_FILE), OpenMode::Create)?;
    let admin_user = options.admin_user.clone();
    let server_cn = options.name.clone();
    let server_certificate_sha256 = server_tls.sha256_fingerprint.clone();
    replicated.write_blocking(move |conn| {
        tandem_store::pki::store_device_ca(conn, &ca)?;
        tandem_store::pki::store_server_tls(conn, &server_cn, &server_tls)?;
        accounts::create(conn, AccountRealm::Admin, &admin_user, &admin_hash)?;
        accounts::create(
            conn,
            AccountRealm::SystemManager,
            &admin_user,
            &system_manager_hash,
        )?;
        Ok(())
    })?;
    // Where this node's own history ends at birth: a node that never synced and wrote nothing
    // after this is a fresh Secondary, whose first sync replaces these entries without calling
    // it divergence (they are still saved, see tandem-repl).
    let init_seq =
        replicated.read_blocking(|conn| Ok(tandem_store::changes::position(conn)?.seq))?;
    replicated.close_blocking();

    create_node_local(dir, config, init_seq)?;
    FileStore::create(&dir.join(FILES_DIR))?;

    // Written last: a directory with tandem.toml is a complete node.
    write_private_file(&dir.join(CONFIG_FILE), &config.to_toml())?;
    Ok(InitReport {
        data_dir: dir.clone(),
        node_id: config.node.id.clone(),
        admin_user: options.admin_user.clone(),
        generated_password,
        ssh_public_key: ssh_key.public_openssh(&config.node.name)?,
        ssh_fingerprint: ssh_key.fingerprint(),
        server_certificate_sha256,
        listeners,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    set_mode(dir, 0o700)
}

fn write_private_file(path: &Path, contents: &str) -> Result<(), NodeError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_error(path))?;
    set_mode(path, 0o600)?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error(path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), NodeError> {
    Ok(())
}

/// What `tandem restore` needs: the backup, and the new node's directory, name and listeners.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub backup: PathBuf,
    pub data_dir: PathBuf,
    pub name: String,
    pub service_addr: String,
    pub system_manager_addr: String,
    pub replication_addr: String,
}

/// What `tandem restore` made.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub node_id: String,
    pub source_node: String,
    pub position_seq: i64,
    pub content_sha256: String,
    pub ssh_public_key: String,
    pub server_certificate_sha256: String,
}

/// Creates a new node in `options.data_dir` (missing or empty) from a backup: the backup's
/// replicated database and app files, a new identity and SSH host key, HA disabled, no Trusted
/// Hosts. The backup is verified completely before anything is written; on failure nothing is
/// left behind that could be mistaken for a node.
pub fn restore(options: &RestoreOptions) -> Result<RestoreReport, NodeError> {
    let init_options = InitOptions {
        data_dir: options.data_dir.clone(),
        name: options.name.clone(),
        service_addr: options.service_addr.clone(),
        system_manager_addr: options.system_manager_addr.clone(),
        replication_addr: options.replication_addr.clone(),
        // Accounts come from the backup; these only satisfy init's checks.
        admin_user: "admin".into(),
        admin_password: None,
        tls_names: Vec::new(),
    };
    let config = validate_init(&init_options)?;
    config.listener_addrs().map_err(NodeError::Usage)?;
    let manifest = tandem_store::backup::verify(&options.backup).map_err(|error| match error {
        StoreError::NotFound { .. } => NodeError::Usage(format!(
            "--from {}: no such backup; pass the directory `tandem backup --to` wrote",
            options.backup.display()
        )),
        StoreError::Corrupt(message) => NodeError::Usage(format!("--from: {message}")),
        other => NodeError::Usage(format!("--from: {other}")),
    })?;
    let dir = &options.data_dir;
    let existed = dir.exists();
    refuse_non_empty(dir)?;
    let result = create_restored(options, &config, &manifest);
    if result.is_err() {
        remove_partial_node(dir, existed);
    }
    result
}

fn refuse_non_empty(dir: &Path) -> Result<(), NodeError> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    if entries.next().is_none() {
        return Ok(());
    }
    let what = if dir.join(CONFIG_FILE).exists() {
        "already holds a Tandem node"
    } else {
        "is not empty"
    };
    Err(NodeError::Usage(format!(
        "{} {what}; refusing to overwrite it. Choose a new or empty directory",
        dir.display()
    )))
}

fn create_restored(
    options: &RestoreOptions,
    config: &NodeConfig,
    manifest: &tandem_store::backup::Manifest,
) -> Result<RestoreReport, NodeError> {
    let dir = &options.data_dir;
    create_private_dir(dir)?;
    let ssh_key = SshHostKey::generate()?;
    write_private_file(&dir.join(SSH_HOST_KEY_FILE), &ssh_key.private_openssh()?)?;
    let files = FileStore::create(&dir.join(FILES_DIR))?;
    let db_path = dir.join(REPLICATED_DB_FILE);
    tandem_store::backup::install(&options.backup, manifest, &db_path, &files)?;
    // Opening migrates an older schema and puts the database in WAL mode, as the node runs it.
    let replicated = tandem_store::open_replicated(&db_path, OpenMode::Existing)?;
    let server_tls = replicated.read_blocking(tandem_store::pki::server_tls)?;
    let server_certificate_sha256 = tandem_crypto::sha256_fingerprint(
        &tandem_crypto::first_certificate_der(&server_tls.certificate_pem, "server certificate")?,
    );
    replicated.close_blocking();

    // Where the restored history ends counts as this node's birth: until it writes, a sync
    // may replace it without calling that divergence (see INIT_SEQ_SETTING).
    create_node_local(dir, config, manifest.position_seq)?;
    // Written last: a directory with tandem.toml is a complete node.
    write_private_file(&dir.join(CONFIG_FILE), &config.to_toml())?;
    Ok(RestoreReport {
        data_dir: dir.clone(),
        node_id: config.node.id.clone(),
        source_node: manifest.source_node.clone(),
        position_seq: manifest.position_seq,
        content_sha256: manifest.content_sha256.clone(),
        ssh_public_key: ssh_key.public_openssh(&config.node.name)?,
        server_certificate_sha256,
    })
}

/// Creates `node.db`: the node's identity and where its own history begins (`init_seq`).
fn create_node_local(dir: &Path, config: &NodeConfig, init_seq: i64) -> Result<(), NodeError> {
    let local = NodeStore::open(&dir.join(NODE_DB_FILE), OpenMode::Create)?;
    local.set_identity_blocking(NodeIdentity {
        node_id: config.node.id.clone(),
        node_name: config.node.name.clone(),
        created_at: tandem_store::common::now(),
    })?;
    local.database().write_blocking(move |conn| {
        tandem_store::history::set_setting(conn, INIT_SEQ_SETTING, &init_seq.to_string())
    })?;
    local.database().close_blocking();
    Ok(())
}

/// Node-local setting: the replicated history's last sequence number when `tandem init` finished.
pub const INIT_SEQ_SETTING: &str = "replication.init_seq";

/// An opened node: its configuration and its stores.
pub struct Node {
    /// Held for as long as anything opened from this node is in use (the server keeps a clone).
    pub lock: std::sync::Arc<DataDirLock>,
    pub data_dir: PathBuf,
    pub config: NodeConfig,
    pub listeners: ListenerAddrs,
    /// The HTTPS listeners' limits (`[listeners]`).
    pub limits: ListenerLimits,
    /// Who may reach the System Manager listener (`[system_manager]`); `client_ca` resolved
    /// against the data directory.
    pub system_manager_access: SystemManagerAccess,
    pub replicated: Database,
    pub local: NodeStore,
    pub files: FileStore,
    pub ssh_host_key: SshHostKey,
}

impl Node {
    /// Opens the node in `data_dir`, refusing a missing, foreign or mismatched one with a message
    /// that says what to do.
    pub fn open(data_dir: &Path) -> Result<Self, NodeError> {
        if !data_dir.is_dir() {
            return Err(NodeError::Usage(format!(
                "data dir {} does not exist; create a node with `tandem init --data-dir {} --name NAME`",
                data_dir.display(),
                data_dir.display()
            )));
        }
        let config_path = data_dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(NodeError::Usage(format!(
                "{} is not a Tandem data dir (it has no {CONFIG_FILE}); create a node with \
                 `tandem init --data-dir DIR --name NAME`",
                data_dir.display()
            )));
        }
        let config = NodeConfig::load(&config_path)?;
        let listeners = config.listener_addrs().map_err(NodeError::Usage)?;
        let lock = std::sync::Arc::new(DataDirLock::acquire(data_dir)?);
        // `load` refused a configuration with problems; these only parse what it checked.
        let limits = config
            .listener_limits()
            .map_err(|problems| NodeError::Usage(problems.join("; ")))?;
        let mut system_manager_access = config
            .system_manager_access()
            .map_err(|problems| NodeError::Usage(problems.join("; ")))?;
        system_manager_access.client_ca = system_manager_access
            .client_ca
            .map(|path| data_dir.join(path));
        let local = NodeStore::open(&data_dir.join(NODE_DB_FILE), OpenMode::Existing)?;
        let identity = local.identity_blocking()?;
        if identity.node_id != config.node.id {
            return Err(NodeError::Usage(format!(
                "{} belongs to node {} ({}), but {CONFIG_FILE} names node {}; the files come from \
                 different nodes. Restore the matching {CONFIG_FILE} or create a new node",
                data_dir.join(NODE_DB_FILE).display(),
                identity.node_name,
                identity.node_id,
                config.node.id
            )));
        }
        let replicated =
            tandem_store::open_replicated(&data_dir.join(REPLICATED_DB_FILE), OpenMode::Existing)?;
        let files = FileStore::open(&data_dir.join(FILES_DIR))?;
        let key_path = data_dir.join(SSH_HOST_KEY_FILE);
        let key_text = std::fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
        let ssh_host_key = SshHostKey::from_openssh(&key_text)?;
        Ok(Self {
            lock,
            data_dir: data_dir.to_owned(),
            config,
            listeners,
            limits,
            system_manager_access,
            replicated,
            local,
            files,
            ssh_host_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> InitOptions {
        InitOptions {
            data_dir: dir.to_owned(),
            name: "node-a".into(),
            service_addr: "127.0.0.1:4443".into(),
            system_manager_addr: "127.0.0.1:8443".into(),
            replication_addr: "127.0.0.1:2222".into(),
            admin_user: "admin".into(),
            admin_password: None,
            tls_names: vec!["mdm.example.com".into()],
        }
    }

    #[test]
    fn init_then_open_and_refuse_to_overwrite() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("node");
        let report = init(&options(&dir)).unwrap();
        let password = report.generated_password.clone().unwrap();
        assert_eq!(password.len(), GENERATED_PASSWORD_CHARS);
        assert!(report.ssh_public_key.starts_with("ssh-ed25519 "));

        let node = Node::open(&dir).unwrap();
        assert_eq!(node.config.node.name, "node-a");
        let hash = node
            .replicated
            .read_blocking(|conn| accounts::password_hash(conn, AccountRealm::Admin, "admin"))
            .unwrap()
            .unwrap();
        assert!(tandem_crypto::verify_password(&password, &hash));
        let sysmgr = node
            .replicated
            .read_blocking(|conn| {
                accounts::password_hash(conn, AccountRealm::SystemManager, "admin")
            })
            .unwrap();
        let sysmgr = sysmgr.unwrap();
        assert!(tandem_crypto::verify_password(&password, &sysmgr));
        assert_ne!(sysmgr, hash, "each realm's hash has its own salt");
        drop(node);

        let error = init(&options(&dir)).unwrap_err().to_string();
        assert!(error.contains("already holds a Tandem node"), "{error}");
    }

    #[test]
    fn init_reports_all_bad_options_and_leaves_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("node");
        let mut bad = options(&dir);
        bad.name = "no spaces allowed".into();
        bad.service_addr = "4443".into();
        bad.admin_password = Some("short".into());
        let error = init(&bad).unwrap_err().to_string();
        assert!(error.contains("--name"), "{error}");
        assert!(error.contains("--service-addr"), "{error}");
        assert!(error.contains("at least 8 characters"), "{error}");
        let mut colon = options(&dir);
        colon.admin_user = "ad:min".into();
        let error = init(&colon).unwrap_err().to_string();
        assert!(
            error.contains("--admin-user") && error.contains("':'"),
            "{error}"
        );
        let mut common = options(&dir);
        common.admin_password = Some("password123".into());
        let error = init(&common).unwrap_err().to_string();
        assert!(error.contains("most common"), "{error}");
        assert!(!dir.exists());
    }

    #[test]
    fn open_explains_missing_and_foreign_dirs() {
        let temp = tempfile::tempdir().unwrap();
        let missing = Node::open(&temp.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        std::fs::write(temp.path().join("notes.txt"), "hello").unwrap();
        let foreign = Node::open(temp.path()).err().unwrap().to_string();
        assert!(foreign.contains("is not a Tandem data dir"), "{foreign}");
    }

    #[test]
    fn open_refuses_a_config_from_another_node() {
        let temp = tempfile::tempdir().unwrap();
        let (a, b) = (temp.path().join("a"), temp.path().join("b"));
        init(&options(&a)).unwrap();
        init(&options(&b)).unwrap();
        std::fs::copy(b.join(CONFIG_FILE), a.join(CONFIG_FILE)).unwrap();
        let error = Node::open(&a).err().unwrap().to_string();
        assert!(error.contains("different nodes"), "{error}");
    }
}
