//! [`StateDir`]: durable state on disk, and the file system calls it makes.
//!
//! A store is four steps, each a system call or a few: write a temporary file, sync it,
//! rename it over the state file, sync the directory. A crash between any two (or in the
//! middle of the write) leaves either the old state file or the new one, whatever the file
//! system wrote back on its own: the new file's bytes are on disk before its name is, and
//! the old name points at the old bytes until the rename is. The calls go through a small
//! internal trait, so that a test (and the `durable` fuzz target) can run the same code on
//! an in-memory file system that forgets whatever was not synced when it "crashes".

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conclave_core::Durable;

#[cfg(any(test, fuzzing, feature = "__fuzzing"))]
pub(crate) mod crash;

/// The file, inside the state directory, that holds the durable state.
pub(crate) const FILE: &str = "durable.bin";
/// The file a store writes first, then renames over [`FILE`].
pub(crate) const TEMP: &str = "durable.bin.tmp";
/// The largest state file read: a valid one is under 64 B; anything much larger is not
/// conclave's, and is refused before it is read whole.
pub(crate) const MAX_STATE_FILE: u64 = 4096;

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
    /// Another process holds the state directory: a member with this id runs from it (a
    /// copied configuration?). Nothing was read or written.
    #[error("state directory {path} is in use by another process (does a member with this id run from it?)")]
    InUse {
        /// The directory.
        path: PathBuf,
    },
    /// The state file exists but is not valid durable state (torn, foreign, damaged). The
    /// member does not start on it: starting afresh would forget its term and vote.
    #[error("state file {path} is corrupt: {source}; the member does not start on it (move it away only if this member's votes may be forgotten)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        source: conclave_core::Error,
    },
}

/// The file system calls a [`StateDir`] makes, one method per call.
pub(crate) trait Fs: Send + Sync + fmt::Debug + 'static {
    /// `mkdir -p`.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The file's length, then its bytes if it is at most `max` long.
    fn read(&self, path: &Path, max: u64) -> io::Result<Result<Vec<u8>, u64>>;
    /// `open(O_WRONLY | O_CREAT | O_TRUNC)`.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// `rename`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `open` the directory and `fsync` it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file of an [`Fs`].
pub(crate) trait FsFile {
    /// One `write`: some prefix of `bytes`, its length returned.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// `fsync`.
    fn sync(&mut self) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug)]
struct RealFs;

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn read(&self, path: &Path, max: u64) -> io::Result<Result<Vec<u8>, u64>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len > max {
            return Ok(Err(len));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        io::Read::read_to_end(&mut io::Read::take(file, max + 1), &mut bytes)?;
        if bytes.len() as u64 > max {
            return Ok(Err(bytes.len() as u64));
        }
        Ok(Ok(bytes))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(OpenOptions::new().write(true).create(true).truncate(true).open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl FsFile for File {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Write::write(self, bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// Takes an exclusive lock on `file` without waiting: `false` if another holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Where there is no `flock`, the directory is not locked.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<bool> {
    Ok(true)
}

/// A directory holding one member's [`Durable`] state.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    /// The lock file, held (locked) for as long as this handle or a clone lives, when
    /// opened with [`StateDir::open_exclusive`].
    lock: Option<Arc<File>>,
}

/// The file, inside the state directory, that a running member holds locked.
const LOCK: &str = "lock";

impl StateDir {
    /// Opens (creating if needed) the state directory at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StateError> {
        Self::open_on(Arc::new(RealFs), dir.as_ref())
    }

    /// The state directory at `dir` on `fs`.
    pub(crate) fn open_on(fs: Arc<dyn Fs>, dir: &Path) -> Result<Self, StateError> {
        let dir = dir.to_path_buf();
        fs.create_dir_all(&dir).map_err(|source| StateError::Io { path: dir.clone(), source })?;
        Ok(Self { dir, fs, lock: None })
    }

    /// Opens the state directory at `dir` for a member that runs from it: as
    /// [`StateDir::open`], and holds it locked (`flock` on a `lock` file inside) while the
    /// handle or a clone lives, so that a second process with the same directory (a copied
    /// configuration) is refused at once, not left to overwrite the first one's term and
    /// vote ([`StateError::InUse`]).
    pub fn open_exclusive(dir: impl AsRef<Path>) -> Result<Self, StateError> {
        let mut state = Self::open(dir)?;
        let path = state.dir.join(LOCK);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StateError::Io { path: path.clone(), source })?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => return Err(StateError::InUse { path: state.dir.clone() }),
            Err(source) => return Err(StateError::Io { path, source }),
        }
        state.lock = Some(Arc::new(file));
        Ok(state)
    }

    /// The stored state, or `None` if nothing was ever stored. A leftover temporary file
    /// (a store cut short) is not read: the state file is the old state until the rename.
    pub fn load(&self) -> Result<Option<Durable>, StateError> {
        let path = self.dir.join(FILE);
        let corrupt =
            |path: PathBuf, why| StateError::Corrupt { path, source: conclave_core::Error::CorruptDurable { why } };
        match self.fs.read(&path, MAX_STATE_FILE) {
            Ok(Ok(bytes)) => Durable::decode(&bytes).map(Some).map_err(|source| StateError::Corrupt { path, source }),
            Ok(Err(_)) => Err(corrupt(path, "far larger than any state file")),
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
        let mut file = self.fs.create(&temp).map_err(io(&temp))?;
        let bytes = state.encode();
        let mut written = 0;
        while written < bytes.len() {
            match file.write(&bytes[written..]) {
                Ok(0) => return Err(io(&temp)(io::Error::new(io::ErrorKind::WriteZero, "the disk took no bytes"))),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&temp)(e)),
            }
        }
        file.sync().map_err(io(&temp))?;
        drop(file);
        let path = self.dir.join(FILE);
        self.fs.rename(&temp, &path).map_err(io(&path))?;
        // The rename is durable once the directory entry is.
        self.fs.sync_dir(&self.dir).map_err(io(&self.dir))?;
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
pub struct MemoryStorage(Arc<std::sync::Mutex<Option<Durable>>>);

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
    fn a_running_member_holds_its_directory() {
        let dir = temp_dir("lock");
        let first = StateDir::open_exclusive(&dir).unwrap();
        let second = StateDir::open_exclusive(&dir);
        let message = second.unwrap_err().to_string();
        assert!(message.contains("is in use by another process"), "{message}");
        // Reading it meanwhile is fine (an operator's look).
        first.store(&Durable::new(1, 2, None)).unwrap();
        assert_eq!(StateDir::open(&dir).unwrap().load().unwrap(), Some(Durable::new(1, 2, None)));
        let clone = first.clone();
        drop(first);
        assert!(StateDir::open_exclusive(&dir).is_err(), "a clone still holds it");
        drop(clone);
        assert!(StateDir::open_exclusive(&dir).is_ok(), "released with the last handle");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_or_oversized_file_is_a_readable_error() {
        let dir = temp_dir("corrupt");
        let state = StateDir::open(&dir).unwrap();
        fs::write(dir.join(FILE), b"not conclave").unwrap();
        let message = state.load().unwrap_err().to_string();
        assert!(message.contains("is corrupt"), "{message}");
        fs::write(dir.join(FILE), vec![0u8; 1 << 20]).unwrap();
        let message = state.load().unwrap_err().to_string();
        assert!(message.contains("far larger than any state file"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What a member restarted on `fs` reads: the state, or why it refuses to start.
    fn restart(fs: crash::CrashFs) -> Result<Option<Durable>, String> {
        let dir = StateDir::open_on(Arc::new(fs), Path::new("state")).map_err(|e| e.to_string())?;
        dir.load().map_err(|e| e.to_string())
    }

    /// Cuts the store of `new` over `old` (none: the first store) after every system call
    /// and at every byte of its writes, restarts on each way the crash may leave the disk,
    /// and returns what the restarted member read each time.
    fn cut_everywhere(old: Option<&Durable>, new: &Durable) -> Vec<(u64, crash::Survivors, Option<Durable>)> {
        let disk = || {
            let fs = crash::CrashFs::new();
            if let Some(old) = old {
                // A previous run's state, and the temporary file of a store it did not finish.
                fs.put(&Path::new("state").join(FILE), &old.encode());
                fs.put(&Path::new("state").join(TEMP), b"half a sta");
            }
            fs
        };
        // The whole store without a crash: how many calls and bytes it spends.
        let fs = disk();
        let dir = StateDir::open_on(Arc::new(fs.clone()), Path::new("state")).unwrap();
        let before = fs.spent();
        dir.store(new).unwrap();
        let total = fs.spent() - before;
        assert!(total > new.encode().len() as u64 + 4, "a write, a sync, a rename and a directory sync at least");

        let mut seen = Vec::new();
        for budget in 0..=total {
            let fs = disk();
            let dir = StateDir::open_on(Arc::new(fs.clone()), Path::new("state")).unwrap();
            fs.crash_after(budget);
            let stored = dir.store(new);
            assert_eq!(stored.is_ok(), !fs.has_crashed() && budget == total, "budget {budget}: {stored:?}");
            for survivors in crash::Survivors::ALL {
                let read = restart(fs.after_crash(survivors))
                    .unwrap_or_else(|e| panic!("cut after {budget} of {total}, {survivors:?}: refused to start: {e}"));
                assert!(
                    read.as_ref() == old || read.as_ref() == Some(new),
                    "cut after {budget} of {total}, {survivors:?}: read {read:?}, neither the old {old:?} nor the new {new:?}"
                );
                // The restarted member stores again over whatever the crash left.
                let fs = fs.after_crash(survivors);
                let again = StateDir::open_on(Arc::new(fs.clone()), Path::new("state")).unwrap();
                let next = Durable::new(new.incarnation + 1, new.term, new.voted_for);
                again.store(&next).unwrap();
                assert_eq!(restart(fs.after_crash(crash::Survivors::ALL[0])), Ok(Some(next)));
                seen.push((budget, survivors, read));
            }
        }
        seen
    }

    #[test]
    fn a_store_cut_anywhere_leaves_the_old_state_or_the_new_one() {
        let old = Durable::new(3, 7, Some(conclave_core::NodeId(2)));
        // A new term and a vote in it: the write that must never be half-remembered.
        let new = Durable::new(3, 8, Some(conclave_core::NodeId(5)));
        let seen = cut_everywhere(Some(&old), &new);
        // Both outcomes happen: early cuts keep the old, late ones the new, and a cut
        // after the rename keeps either, depending on what the disk wrote back.
        assert!(seen.iter().any(|(_, _, read)| read.as_ref() == Some(&old)));
        assert!(seen.iter().any(|(_, _, read)| read.as_ref() == Some(&new)));
        let last_old = seen.iter().filter(|(_, _, r)| r.as_ref() == Some(&old)).map(|(b, _, _)| *b).max();
        let first_new = seen.iter().filter(|(_, _, r)| r.as_ref() == Some(&new)).map(|(b, _, _)| *b).min();
        assert!(first_new <= last_old, "some cut leaves either, as the disk wrote back: {first_new:?} {last_old:?}");
        // The first store of all: a cut leaves nothing (the member never acted on it) or it.
        let first = cut_everywhere(None, &new);
        assert!(first.iter().any(|(_, _, read)| read.is_none()));
        assert!(first.iter().all(|(_, _, read)| read.is_none() || read.as_ref() == Some(&new)));
    }

    /// The model bites: a store that renamed its file before syncing it would leave a
    /// torn state file after some crash, and the member would refuse to start on it.
    #[test]
    fn a_crash_forgets_what_was_not_synced() {
        let fs = crash::CrashFs::new();
        let path = Path::new("state").join(FILE);
        let mut file = fs.create(&path).unwrap();
        assert_eq!(file.write(b"abcdefghij").unwrap(), 7, "short writes");
        let names_synced = fs.after_crash(crash::Survivors { unsynced_data: true, unsynced_names: false });
        assert!(names_synced.read(&path, 100).is_err(), "the name was never synced");
        fs.sync_dir(Path::new("state")).unwrap();
        let data_lost = fs.after_crash(crash::Survivors { unsynced_data: false, unsynced_names: true });
        assert_eq!(data_lost.read(&path, 100).unwrap(), Ok(Vec::new()), "the bytes were never synced");
        let message = restart(data_lost).unwrap_err();
        assert!(message.contains("is corrupt") && message.contains("does not start"), "{message}");
        file.sync().unwrap();
        fs.crash_after(1);
        assert!(file.write(b"xyz").is_err(), "a write with no budget left for its bytes");
        assert!(fs.has_crashed());
        let kept = fs.after_crash(crash::Survivors { unsynced_data: false, unsynced_names: false });
        assert_eq!(kept.read(&path, 100).unwrap(), Ok(b"abcdefg".to_vec()));
    }
}
