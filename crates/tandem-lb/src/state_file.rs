//! The controller's memory across restarts ([`Memory`]: the active backend, the highest claim
//! seen per backend and overall, the maintenance hold) in one small JSON file.
//!
//! Written atomically whenever the memory changes: a temporary file in the same directory,
//! fsynced, renamed over the old one, then the directory fsynced, so a crash or power loss
//! leaves either the old file or the new one, never a torn one. Read once at start; a file that
//! does not read back is an error naming the file and the fix, never silently ignored: starting
//! without the memory is exactly what sent devices to an old Primary in issue 15.

use crate::policy::{HOLD_REASON_CHARS_MAX, Memory};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of a state file read at most. Sixteen backends (`bounds::BACKENDS_MAX`) with a claim
/// each, at most 200 bytes apiece, and a hold reason of `HOLD_REASON_CHARS_MAX` characters need
/// under 8 KiB; a larger file is not one `tandem lb` wrote, and is refused rather than parsed.
pub const STATE_FILE_BYTES_MAX: u64 = 64 * 1024;

/// The format's version: a later format is refused by name rather than misread.
pub const STATE_FILE_VERSION: u32 = 1;

/// The file's name when `state_file` is not set: next to the configuration file.
pub const STATE_FILE_NAME_DEFAULT: &str = "lb-state.json";

const FIX: &str = "It is the controller's memory of the newest ballots, the active backend and \
the maintenance hold. Restore it from a backup, or, when you have checked with `tandem ha status` \
on each node which one is Active, remove the file and start tandem lb again (it then trusts the \
ballots it probes)";

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error(
        "cannot read the state file {path}: {source}; check its permissions or state_file in lb.toml"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is larger than {max} bytes: it is not one tandem lb wrote. {FIX}", max = STATE_FILE_BYTES_MAX)]
    TooLarge { path: PathBuf },
    #[error("the state file {path} is not valid: {message}. {FIX}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "cannot write the state file {path} ({step}): {source}; check the directory's free space and permissions"
    )]
    Write {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    version: u32,
    memory: Memory,
}

/// Reads the memory; `None` when the file does not exist yet (the first start).
pub fn load(path: &Path) -> Result<Option<Memory>, StateFileError> {
    let read_error = |source| StateFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let mut bytes = Vec::new();
    file.take(STATE_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > STATE_FILE_BYTES_MAX {
        return Err(StateFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let corrupt = |message: String| StateFileError::Corrupt {
        path: path.to_owned(),
        message,
    };
    // The version first, so a later format is named as such rather than as a missing field.
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let Version { version } =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
    if version != STATE_FILE_VERSION {
        return Err(corrupt(format!(
            "version {version} is not {STATE_FILE_VERSION}, the only one this tandem lb reads"
        )));
    }
    let form: FileForm =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
    if let Some(hold) = &form.memory.hold
        && hold.reason.chars().count() > HOLD_REASON_CHARS_MAX
    {
        return Err(corrupt(format!(
            "the hold's reason is longer than {HOLD_REASON_CHARS_MAX} characters"
        )));
    }
    Ok(Some(form.memory))
}

/// Replaces the file with `memory`, atomically and durably.
pub fn save(path: &Path, memory: &Memory) -> Result<(), StateFileError> {
    let write_error = |step, source| StateFileError::Write {
        path: path.to_owned(),
        step,
        source,
    };
    let form = FileForm {
        version: STATE_FILE_VERSION,
        memory: memory.clone(),
    };
    // Serializing plain strings, numbers and maps cannot fail.
    let mut text = serde_json::to_vec_pretty(&form)
        .map_err(|error| write_error("serialize", std::io::Error::other(error)))?;
    text.push(b'\n');
    let directory = directory_of(path);
    let temporary = temporary_path(path);
    let mut file = std::fs::File::create(&temporary)
        .map_err(|error| write_error("create the temporary file", error))?;
    file.write_all(&text)
        .map_err(|error| write_error("write the temporary file", error))?;
    file.sync_all()
        .map_err(|error| write_error("fsync the temporary file", error))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(|error| write_error("rename", error))?;
    std::fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| write_error("fsync the directory", error))
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `.NAME.tmp` beside the file: the same file system, so the rename is atomic.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |name| name.to_string_lossy());
    directory_of(path).join(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Hold;
    use tandem_ha::ballot::Ballot;

    fn memory() -> Memory {
        Memory {
            active: Some("main-secondary".into()),
            highest_claim: Some(Ballot::new(2, "b-1")),
            backend_claims: [
                ("main-primary".to_owned(), Ballot::new(1, "a-1")),
                ("main-secondary".to_owned(), Ballot::new(2, "b-1")),
            ]
            .into(),
            hold: Some(Hold {
                reason: "upgrade to 2.4".into(),
                since_ms: 1_700_000_000_000,
            }),
            synchronous: Some(tandem_ha::record::Record::Degraded {
                primary: Ballot::new(2, "b-1"),
                generation: 41,
                by: "node-b".into(),
                at_ms: 1_700_000_000_000,
            }),
        }
    }

    #[test]
    fn a_saved_memory_reads_back_and_replaces_the_old_file_without_a_leftover() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("lb-state.json");
        assert_eq!(load(&path).unwrap(), None, "no file yet: the first start");
        save(&path, &Memory::default()).unwrap();
        save(&path, &memory()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(memory()));
        let names: Vec<String> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["lb-state.json".to_owned()]);
    }

    #[test]
    fn a_torn_temporary_file_never_replaces_the_state() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("lb-state.json");
        save(&path, &memory()).unwrap();
        // A crash between writing the temporary file and the rename leaves it behind; the
        // state file itself is still the last complete one, and the next save overwrites it.
        std::fs::write(temporary_path(&path), b"{\"version\": 1, \"mem").unwrap();
        assert_eq!(load(&path).unwrap(), Some(memory()));
        save(&path, &Memory::default()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Memory::default()));
    }

    #[test]
    fn a_corrupt_or_oversized_file_is_refused_naming_the_file_and_the_fix() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("lb-state.json");
        let cases: [(Vec<u8>, &str); 4] = [
            (b"{\"version\": 1, \"mem".to_vec(), "is not valid: EOF"),
            (
                b"{\"version\": 9, \"memory\": {}}".to_vec(),
                "version 9 is not 1",
            ),
            (
                b"{\"version\": 1, \"memory\": {\"activ\": null}}".to_vec(),
                "unknown field `activ`",
            ),
            (
                vec![b' '; STATE_FILE_BYTES_MAX as usize + 1],
                "larger than 65536 bytes",
            ),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, bytes).unwrap();
            let error = load(&path).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(error.contains("remove the file"), "{error}");
        }
    }

    #[test]
    fn a_file_of_exactly_the_limit_is_read() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("lb-state.json");
        let mut text = serde_json::to_vec(&FileForm {
            version: STATE_FILE_VERSION,
            memory: memory(),
        })
        .unwrap();
        text.resize(STATE_FILE_BYTES_MAX as usize, b' ');
        std::fs::write(&path, text).unwrap();
        assert_eq!(load(&path).unwrap(), Some(memory()));
    }

    #[test]
    fn a_write_into_a_missing_directory_names_the_file_and_the_step() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("gone").join("lb-state.json");
        let error = save(&path, &memory()).unwrap_err().to_string();
        assert!(error.contains("create the temporary file"), "{error}");
        assert!(error.contains("gone/lb-state.json"), "{error}");
    }
}
