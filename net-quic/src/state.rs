//! [`StateDir`]: durable state on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use conclave_core::Durable;

/// The file, inside the state directory, that holds the durable state.
const FILE: &str = "durable.bin";
const TEMP: &str = "durable.bin.tmp";

/// Why the state directory could not be used. Nothing was changed on disk except, for a
/// failed store, possibly a leftover temporary file that the next store replaces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The directory could not be created or read.
    #[error("state directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The state file exists but is not valid durable state (torn, foreign, damaged).
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        source: conclave_core::Error,
    },
}

/// A directory holding one member's [`Durable`] state.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state directory at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StateError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| StateError::Io { path: dir.clone(), source })?;
        Ok(Self { dir })
    }

    /// The stored state, or `None` if nothing was ever stored.
    pub fn load(&self) -> Result<Option<Durable>, StateError> {
        let path = self.dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => Durable::decode(&bytes).map(Some).map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Stores `state` so that a crash at any point leaves either the old or the new state:
    /// write a temporary file, sync it, rename it over the old one, sync the directory.
    pub fn store(&self, state: &Durable) -> Result<(), StateError> {
        let temp = self.dir.join(TEMP);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temp).map_err(io(&temp))?;
        file.write_all(&state.encode()).map_err(io(&temp))?;
        file.sync_all().map_err(io(&temp))?;
        drop(file);
        let path = self.dir.join(FILE);
        fs::rename(&temp, &path).map_err(io(&path))?;
        // The rename is durable once the directory entry is.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Where a driver keeps a member's [`Durable`] state. `store` must not return before the
/// state is on stable storage: the driver acts on no later output until it has.
pub trait Storage: Send + 'static {
    /// The stored state, or `None` if nothing was ever stored.
    fn load(&self) -> Result<Option<Durable>, StateError>;
    /// Stores `state` durably.
    fn store(&mut self, state: &Durable) -> Result<(), StateError>;
}

impl Storage for StateDir {
    fn load(&self) -> Result<Option<Durable>, StateError> {
        Self::load(self)
    }

    fn store(&mut self, state: &Durable) -> Result<(), StateError> {
        Self::store(self, state)
    }
}

/// State kept in memory, shared by clones: for simulated hosts whose "disk" must outlive a
/// crash of the host but not of the process.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage(std::sync::Arc<std::sync::Mutex<Option<Durable>>>);

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets what was stored (a disk lost with its host).
    pub fn wipe(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Durable>> {
        // The value is replaced whole, so a poisoned lock still holds a consistent one.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> Result<Option<Durable>, StateError> {
        Ok(self.lock().clone())
    }

    fn store(&mut self, state: &Durable) -> Result<(), StateError> {
        *self.lock() = Some(state.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("conclave-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn stores_replaces_and_loads() {
        let dir = temp_dir("roundtrip");
        let state = StateDir::open(&dir).unwrap();
        assert!(state.load().unwrap().is_none());
        state.store(&Durable::new(1, 2, None)).unwrap();
        state.store(&Durable::new(5, 2, Some(conclave_core::NodeId(4)))).unwrap();
        let reopened = StateDir::open(&dir).unwrap();
        assert_eq!(reopened.load().unwrap(), Some(Durable::new(5, 2, Some(conclave_core::NodeId(4)))));
        assert!(!dir.join(TEMP).exists(), "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_a_readable_error() {
        let dir = temp_dir("corrupt");
        let state = StateDir::open(&dir).unwrap();
        fs::write(dir.join(FILE), b"not conclave").unwrap();
        let message = state.load().unwrap_err().to_string();
        assert!(message.contains("is corrupt"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
