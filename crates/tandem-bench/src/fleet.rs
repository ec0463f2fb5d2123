//! The enrolled fleet: identities kept in memory for the check-in phase, and optionally saved as
//! JSON lines (`--fleet-file`) so later runs against the same node skip enrollment.
//!
//! File format: a header line `{"format":…,"serverCertificateSha256":…}` tying the file to one
//! server, then one `{"uuid":…,"certificatePem":…,"privateKeyPem":…}` line per device.

use crate::tls::Tls;
use anyhow::{Context, Result, bail};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const FORMAT: &str = "tandem-loadgen-fleet/1";
/// Threads parsing identities (private keys) when a fleet is loaded: the machine's two cores.
const PARSE_THREADS: usize = 2;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    server_certificate_sha256: String,
}

/// A device identity as the server issued it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub uuid: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// An enrolled device ready to connect.
pub struct Device {
    pub uuid: String,
    pub identity: Arc<CertifiedKey>,
}

/// Reads the devices saved for this server; an absent file is an empty fleet.
pub fn load(path: &Path, server_fingerprint: &str) -> Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = BufReader::new(file).lines();
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Header = serde_json::from_str(&header?)
        .with_context(|| format!("{}: line 1 is not a fleet header", path.display()))?;
    if header.format != FORMAT {
        bail!(
            "{}: format {:?}, expected {FORMAT:?}; delete the file to enroll anew",
            path.display(),
            header.format
        );
    }
    if header.server_certificate_sha256 != server_fingerprint {
        bail!(
            "{} was enrolled against another server (certificate SHA-256 {}, this one {}); \
             delete it or pass another --fleet-file",
            path.display(),
            header.server_certificate_sha256,
            server_fingerprint
        );
    }
    let mut records = Vec::new();
    for (index, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(record) => records.push(record),
            // An interrupted run may leave a torn last line; everything before it is good.
            Err(error) => {
                eprintln!(
                    "tandem-loadgen: {} line {}: {error}; ignoring it",
                    path.display(),
                    index + 2
                );
            }
        }
    }
    Ok(records)
}

/// Parses identities on [`PARSE_THREADS`] threads (loading a private key validates it, which
/// costs tens of microseconds: seconds for 100,000 devices on one core).
pub fn parse(tls: &Tls, records: &[Record]) -> Result<Vec<Device>> {
    let chunk = records.len().div_ceil(PARSE_THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|record| {
                            let identity = tls
                                .identity(&record.certificate_pem, &record.private_key_pem)
                                .with_context(|| format!("identity of device {}", record.uuid))?;
                            Ok(Device {
                                uuid: record.uuid.clone(),
                                identity: Arc::new(identity),
                            })
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut devices = Vec::with_capacity(records.len());
        for handle in handles {
            devices.extend(
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("an identity parser panicked"))??,
            );
        }
        Ok(devices)
    })
}

/// Appends newly enrolled devices to the fleet file as they arrive.
pub struct Writer {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
}

impl Writer {
    /// Opens `path` for appending, writing the header when the file is new or empty.
    pub fn open(path: &Path, server_fingerprint: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let empty = file.metadata()?.len() == 0;
        let mut file = BufWriter::new(file);
        if empty {
            let header = Header {
                format: FORMAT.into(),
                server_certificate_sha256: server_fingerprint.into(),
            };
            serde_json::to_writer(&mut file, &header)?;
            file.write_all(b"\n")?;
        }
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    pub fn append(&self, record: &Record) -> Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_writer(&mut *file, record)?;
        file.write_all(b"\n")
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    pub fn finish(&self) -> Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}
