//! The content-addressed file store: app files named by their SHA-256, so replication can ask
//! "do you have this hash?" and never copies a file twice.
//!
//! A file is written to `tmp/`, fsynced, and renamed into `sha256/ab/abcdef…` (then the directory
//! is fsynced): a crash leaves either no file or a complete one under its final name, never a
//! partial file that a hash lookup could find.

use crate::error::{StoreError, StoreResult};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
}

/// A file completely written and named by its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub sha256: String,
    pub size_bytes: u64,
}

pub struct FileWriter {
    temp: TempFile,
    file: tokio::fs::File,
    hasher: Sha256,
    size_bytes: u64,
    size_bytes_max: u64,
    store: FileStore,
}

impl FileStore {
    pub fn create(root: &Path) -> StoreResult<Self> {
        for dir in [root.join("tmp"), root.join("sha256")] {
            std::fs::create_dir_all(&dir).map_err(|error| StoreError::io(&dir, error))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn open(root: &Path) -> StoreResult<Self> {
        if !root.join("sha256").is_dir() {
            return Err(StoreError::Foreign {
                path: root.to_owned(),
                expected: "file store",
                reason: "it has no sha256/ directory".into(),
            });
        }
        // Leftovers of uploads interrupted by a crash: never referenced, safe to remove.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Self::create(root)
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        self.root.join("sha256").join(prefix).join(sha256)
    }

    pub fn contains(&self, sha256: &str) -> bool {
        self.path_of(sha256).is_file()
    }

    /// Starts a new file of at most `size_bytes_max` bytes.
    pub async fn begin(&self, size_bytes_max: u64) -> StoreResult<FileWriter> {
        let temp_path = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let file = tokio::fs::File::create(&temp_path)
            .await
            .map_err(|error| StoreError::io(&temp_path, error))?;
        Ok(FileWriter {
            temp: TempFile {
                path: temp_path,
                renamed: false,
            },
            file,
            hasher: Sha256::new(),
            size_bytes: 0,
            size_bytes_max,
            store: self.clone(),
        })
    }
}

/// The file being written under `tmp/`. Removed when dropped unless `finish` renamed it: a write
/// that fails (a full disk, a broken upload or sync) must give its space back at once, not at
/// the next start.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: a leftover is also swept from tmp/ when the store opens.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl FileWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> StoreResult<()> {
        self.size_bytes += chunk.len() as u64;
        if self.size_bytes > self.size_bytes_max {
            let _ = tokio::fs::remove_file(&self.temp.path).await;
            return Err(StoreError::Invalid(crate::error::InvalidInput::single(
                "file",
                &format!("more than {} bytes", self.size_bytes_max),
                format!("must be at most {} bytes", self.size_bytes_max),
            )));
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|error| StoreError::io(&self.temp.path, error))
    }

    /// Makes the file durable under its content name and returns that name.
    pub async fn finish(mut self) -> StoreResult<StoredFile> {
        let temp_path = self.temp.path.clone();
        let io = |error| StoreError::io(&temp_path, error);
        self.file.flush().await.map_err(io)?;
        self.file.sync_all().await.map_err(io)?;
        drop(self.file);
        let sha256 = hex::encode(self.hasher.finalize());
        let final_path = self.store.path_of(&sha256);
        let dir = final_path.parent().map(Path::to_owned).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|error| StoreError::io(&dir, error))?;
        tokio::fs::rename(&temp_path, &final_path)
            .await
            .map_err(|error| StoreError::io(&final_path, error))?;
        self.temp.renamed = true;
        let dir_handle = tokio::fs::File::open(&dir)
            .await
            .map_err(|error| StoreError::io(&dir, error))?;
        dir_handle
            .sync_all()
            .await
            .map_err(|error| StoreError::io(&dir, error))?;
        Ok(StoredFile {
            sha256,
            size_bytes: self.size_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_named_by_content_and_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::create(dir.path()).unwrap();
        let mut writer = store.begin(1024).await.unwrap();
        writer.write(b"hello ").await.unwrap();
        writer.write(b"world").await.unwrap();
        let stored = writer.finish().await.unwrap();
        assert_eq!(
            stored.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(stored.size_bytes, 11);
        assert!(store.contains(&stored.sha256));
        assert_eq!(
            std::fs::read(store.path_of(&stored.sha256)).unwrap(),
            b"hello world"
        );

        let mut too_big = store.begin(4).await.unwrap();
        let error = too_big.write(b"12345").await.unwrap_err();
        assert!(error.to_string().contains("at most 4 bytes"), "{error}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn an_abandoned_write_gives_its_space_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::create(dir.path()).unwrap();
        let tmp_files = || std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        let mut writer = store.begin(1024).await.unwrap();
        writer.write(b"half an upload").await.unwrap();
        assert_eq!(tmp_files(), 1);
        drop(writer);
        assert_eq!(tmp_files(), 0);
        let writer = store.begin(1024).await.unwrap();
        let stored = writer.finish().await.unwrap();
        assert!(store.contains(&stored.sha256), "a finished file stays");
        assert_eq!(tmp_files(), 0);
    }

    #[test]
    fn a_full_disk_says_so() {
        let error = StoreError::io("/data/files/tmp/x", std::io::Error::from_raw_os_error(28));
        let text = error.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert!(
            text.contains("the file system is full; free space"),
            "{text}"
        );
    }
}
