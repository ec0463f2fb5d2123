//! Schemas of the two databases. Migrations are append-only: a released migration is never
//! edited, because replication compares schema versions and refuses peers that differ.

use crate::db::{Migration, Schema};

/// The replicated database: everything a promoted Secondary needs to serve the fleet.
pub const REPLICATED: Schema = Schema {
    application_id: 0x5444_4d52, // "TDMR": Tandem, replicated
    description: "replicated database",
    migrations: &[
        Migration::Sql(REPLICATED_V1),
        Migration::Code(crate::changes::install_change_log),
        Migration::Code(crate::changes::capture_changed_columns),
        Migration::Code(crate::changes::change_log_check_without_in),
    ],
    change_capture: true,
};

/// The node-local store: what belongs to this machine and is never replicated.
pub const NODE_LOCAL: Schema = Schema {
    application_id: 0x5444_4d4c, // "TDML": Tandem, local
    description: "node-local store",
    migrations: &[
        Migration::Sql(NODE_LOCAL_V1),
        Migration::Sql(NODE_LOCAL_V2),
        Migration::Sql(NODE_LOCAL_V3),
        Migration::Sql(NODE_LOCAL_V4),
    ],
    change_capture: false,
};

const REPLICATED_V1: &str = r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    principal     TEXT NOT NULL UNIQUE,
    email         TEXT,
    first_name    TEXT,
    last_name     TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE devices (
    id                          INTEGER PRIMARY KEY,
    uuid                        TEXT NOT NULL UNIQUE,
    udid                        TEXT,
    serial                      TEXT,
    imei                        TEXT,
    platform                    TEXT NOT NULL,
    os_version                  TEXT,
    model                       TEXT,
    manufacturer                TEXT,
    status                      TEXT NOT NULL,
    compliant                   INTEGER NOT NULL DEFAULT 1,
    owner                       TEXT NOT NULL,
    user_id                     INTEGER NOT NULL REFERENCES users(id),
    registered_at               TEXT NOT NULL,
    enrolled_at                 TEXT,
    last_checkin_at             TEXT,
    ip_address                  TEXT,
    client_version              TEXT,
    enrollment_pin_sha256       TEXT UNIQUE,
    enrollment_pin_expires_at   TEXT
);
-- A serial, UDID or IMEI names one live device; retired and wiped devices keep theirs for history.
CREATE UNIQUE INDEX devices_serial_live ON devices(serial)
    WHERE serial IS NOT NULL AND status NOT IN ('RETIRED', 'WIPED');
CREATE UNIQUE INDEX devices_udid_live ON devices(udid)
    WHERE udid IS NOT NULL AND status NOT IN ('RETIRED', 'WIPED');
CREATE UNIQUE INDEX devices_imei_live ON devices(imei)
    WHERE imei IS NOT NULL AND status NOT IN ('RETIRED', 'WIPED');
CREATE INDEX devices_user ON devices(user_id);

CREATE TABLE device_certificates (
    id                  INTEGER PRIMARY KEY,
    device_id           INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    serial_hex          TEXT NOT NULL UNIQUE,
    sha256_fingerprint  TEXT NOT NULL UNIQUE,
    certificate_pem     TEXT NOT NULL,
    not_before          TEXT NOT NULL,
    not_after           TEXT NOT NULL,
    issued_at           TEXT NOT NULL,
    revoked_at          TEXT
);
CREATE INDEX device_certificates_device ON device_certificates(device_id);

CREATE TABLE labels (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE device_labels (
    device_id  INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    label_id   INTEGER NOT NULL REFERENCES labels(id) ON DELETE CASCADE,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (device_id, label_id)
) WITHOUT ROWID;
CREATE INDEX device_labels_label ON device_labels(label_id);

-- App files by content hash; the bytes live in the file store under files/sha256/.
CREATE TABLE app_files (
    sha256      TEXT PRIMARY KEY,
    size_bytes  INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE apps (
    id           INTEGER PRIMARY KEY,
    platform     TEXT NOT NULL,
    bundle_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    source       TEXT NOT NULL,
    file_sha256  TEXT REFERENCES app_files(sha256),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (platform, bundle_id, version)
);

-- What each device reported installed at its last check-in.
CREATE TABLE device_apps (
    device_id  INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    bundle_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    PRIMARY KEY (device_id, bundle_id)
) WITHOUT ROWID;

-- Policies and configurations share one shape; `kind` tells them apart.
CREATE TABLE policies (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('POLICY', 'CONFIGURATION')),
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (kind, name)
);

CREATE TABLE policy_labels (
    policy_id  INTEGER NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    label_id   INTEGER NOT NULL REFERENCES labels(id) ON DELETE CASCADE,
    PRIMARY KEY (policy_id, label_id)
) WITHOUT ROWID;
CREATE INDEX policy_labels_label ON policy_labels(label_id);

CREATE TABLE device_commands (
    id            INTEGER PRIMARY KEY,
    device_id     INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    command       TEXT NOT NULL,
    status        TEXT NOT NULL,
    queued_by     TEXT NOT NULL,
    queued_at     TEXT NOT NULL,
    sent_at       TEXT,
    completed_at  TEXT,
    result        TEXT
);
CREATE INDEX device_commands_open ON device_commands(device_id)
    WHERE status IN ('PENDING', 'SENT');

CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Append-only: the triggers below refuse edits; only retention pruning deletes old rows.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    subject_type  TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    message       TEXT NOT NULL
);
CREATE INDEX events_kind ON events(kind);
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- The device CA and the server TLS certificate, replicated so a promoted Secondary presents the
-- same certificate and keeps issuing identities devices already trust.
CREATE TABLE pki_material (
    name             TEXT PRIMARY KEY CHECK (name IN ('device_ca', 'server_tls')),
    common_name      TEXT NOT NULL,
    certificate_pem  TEXT NOT NULL,
    private_key_pem  TEXT NOT NULL,
    created_at       TEXT NOT NULL
);

CREATE TABLE admin_users (
    id             INTEGER PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL
);

CREATE TABLE system_manager_users (
    id             INTEGER PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
"#;

const NODE_LOCAL_V1: &str = r#"
-- Who this node is. Written once by `tandem init`; a data dir whose config names another node is
-- refused at start.
CREATE TABLE node_identity (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    node_id     TEXT NOT NULL,
    node_name   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Node-local settings (HA configuration joins here); never replicated.
CREATE TABLE local_settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- The node's own log by module (e.g. HighAvailability), bounded by retention pruning.
CREATE TABLE local_log (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    module   TEXT NOT NULL,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX local_log_module ON local_log(module, id);
"#;

const NODE_LOCAL_V2: &str = r#"
-- Peers allowed to open the replication channel, and the host key each must present
-- (guide: Manage Trusted Hosts). Keys are compared without their comments.
CREATE TABLE trusted_hosts (
    host         TEXT NOT NULL,
    port         INTEGER NOT NULL,
    public_key   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    added_at     TEXT NOT NULL,
    PRIMARY KEY (host, port)
);
CREATE INDEX trusted_hosts_key ON trusted_hosts(public_key);
"#;

const NODE_LOCAL_V3: &str = r#"
-- Sync History (guide: Run Sync Now / Sync History): one row per sync this node ran as the
-- syncing side. A row left 'running' by a killed process is marked 'interrupted' by the next sync.
CREATE TABLE sync_history (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    source       TEXT NOT NULL,
    trigger      TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled')),
    kind         TEXT CHECK (kind IN ('full', 'incremental', 'none')),
    result       TEXT NOT NULL CHECK (result IN ('running', 'succeeded', 'failed', 'refused', 'interrupted')),
    entries      INTEGER NOT NULL DEFAULT 0,
    files        INTEGER NOT NULL DEFAULT 0,
    bytes        INTEGER NOT NULL DEFAULT 0,
    position_seq INTEGER,
    note         TEXT,
    error        TEXT
);
"#;

// Sync History gains continuous replication sessions (trigger 'continuous': one row per stream,
// from connect to its end) and the 'skipped' result that a due sync meeting a running one
// records (V3's CHECK refused it). SQLite cannot alter a CHECK, so the table is rebuilt.
const NODE_LOCAL_V4: &str = r#"
CREATE TABLE sync_history_v4 (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    source       TEXT NOT NULL,
    trigger      TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'continuous')),
    kind         TEXT CHECK (kind IN ('full', 'incremental', 'none', 'stream')),
    result       TEXT NOT NULL CHECK (result IN ('running', 'succeeded', 'failed', 'refused', 'interrupted', 'skipped')),
    entries      INTEGER NOT NULL DEFAULT 0,
    files        INTEGER NOT NULL DEFAULT 0,
    bytes        INTEGER NOT NULL DEFAULT 0,
    position_seq INTEGER,
    note         TEXT,
    error        TEXT
);
INSERT INTO sync_history_v4 SELECT * FROM sync_history;
DROP TABLE sync_history;
ALTER TABLE sync_history_v4 RENAME TO sync_history;
"#;
