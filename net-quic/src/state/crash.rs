//! An in-memory file system that can crash: [`CrashFs`]. It counts every system call and
//! every byte written, and when the budget it was given runs out, the call in progress
//! stops there (a write keeps the bytes that fit) and every later call fails. What survives
//! the crash is then chosen the way a real disk may leave it: file contents as last synced
//! or as last written, directory entries as last synced or as last changed, in all four
//! combinations (a journal may commit a rename before the data it names, or after).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Fs, FsFile};

/// One file's bytes: as written, and as last synced.
#[derive(Clone, Debug, Default)]
struct Inode {
    written: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
struct Disk {
    inodes: Vec<Inode>,
    /// Names as the running system sees them.
    entries: BTreeMap<PathBuf, usize>,
    /// Names as last synced (what a crash keeps for sure).
    synced_entries: BTreeMap<PathBuf, usize>,
    /// System calls and bytes left before the crash; `None`: no crash planned.
    budget: Option<u64>,
    crashed: bool,
    /// System calls made (each counts one) and bytes written.
    spent: u64,
}

/// Which writes a crash keeps (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Survivors {
    /// File contents as written (else as last synced).
    pub(crate) unsynced_data: bool,
    /// Directory entries as changed (else as last synced).
    pub(crate) unsynced_names: bool,
}

impl Survivors {
    /// The four ways a crash may leave the disk.
    pub(crate) const ALL: [Self; 4] = [
        Self { unsynced_data: false, unsynced_names: false },
        Self { unsynced_data: false, unsynced_names: true },
        Self { unsynced_data: true, unsynced_names: false },
        Self { unsynced_data: true, unsynced_names: true },
    ];
}

/// An in-memory file system that crashes after a budget of system calls and bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct CrashFs(Arc<Mutex<Disk>>);

fn crashed() -> io::Error {
    io::Error::other("the machine crashed")
}

impl CrashFs {
    /// An empty file system that never crashes.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        // Every change to the disk is made whole under the lock.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A file with these bytes, written and synced under this name.
    pub(crate) fn put(&self, path: &Path, bytes: &[u8]) {
        let mut disk = self.disk();
        let inode = disk.inodes.len();
        disk.inodes.push(Inode { written: bytes.to_vec(), synced: bytes.to_vec() });
        disk.entries.insert(path.to_path_buf(), inode);
        disk.synced_entries.insert(path.to_path_buf(), inode);
    }

    /// From now on, crash once `budget` more system calls and bytes are spent.
    pub(crate) fn crash_after(&self, budget: u64) {
        self.disk().budget = Some(budget);
    }

    /// System calls and bytes spent so far.
    #[cfg(test)]
    pub(crate) fn spent(&self) -> u64 {
        self.disk().spent
    }

    /// Whether the planned crash happened.
    #[cfg(test)]
    pub(crate) fn has_crashed(&self) -> bool {
        self.disk().crashed
    }

    /// The disk after a crash (now), as `survivors` says, on a machine that restarted.
    pub(crate) fn after_crash(&self, survivors: Survivors) -> Self {
        let disk = self.disk();
        let names = if survivors.unsynced_names { &disk.entries } else { &disk.synced_entries };
        let after = Self::new();
        for (path, &inode) in names {
            let inode = &disk.inodes[inode];
            after.put(path, if survivors.unsynced_data { &inode.written } else { &inode.synced });
        }
        after
    }

    /// Spends `cost` of the budget; how much of it was granted before a crash.
    fn spend(&self, cost: u64) -> Result<u64, io::Error> {
        let mut disk = self.disk();
        if disk.crashed {
            return Err(crashed());
        }
        let granted = match disk.budget {
            Some(left) if left < cost => {
                disk.budget = Some(0);
                disk.crashed = true;
                left
            }
            Some(left) => {
                disk.budget = Some(left - cost);
                cost
            }
            None => cost,
        };
        disk.spent += granted;
        Ok(granted)
    }

    /// Spends one system call, or crashes.
    fn call(&self) -> io::Result<()> {
        match self.spend(1)? {
            1 => Ok(()),
            _ => Err(crashed()),
        }
    }
}

impl Fs for CrashFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.call()
    }

    fn read(&self, path: &Path, max: u64) -> io::Result<Result<Vec<u8>, u64>> {
        self.call()?;
        let disk = self.disk();
        let inode = disk.entries.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let bytes = &disk.inodes[*inode].written;
        if bytes.len() as u64 > max {
            return Ok(Err(bytes.len() as u64));
        }
        Ok(Ok(bytes.clone()))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.call()?;
        let mut disk = self.disk();
        let inode = match disk.entries.get(path) {
            Some(&inode) => {
                disk.inodes[inode].written.clear();
                inode
            }
            None => {
                disk.inodes.push(Inode::default());
                let inode = disk.inodes.len() - 1;
                disk.entries.insert(path.to_path_buf(), inode);
                inode
            }
        };
        Ok(Box::new(CrashFile { fs: self.clone(), inode }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.call()?;
        let mut disk = self.disk();
        let inode = disk.entries.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.call()?;
        let mut disk = self.disk();
        disk.synced_entries = disk.entries.clone();
        Ok(())
    }
}

/// An open file of a [`CrashFs`]. Writes take at most 7 bytes a call, so that the
/// writer's loop over short writes runs too.
struct CrashFile {
    fs: CrashFs,
    inode: usize,
}

/// The most bytes one write takes.
const WRITE_CHUNK: usize = 7;

impl FsFile for CrashFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.fs.call()?;
        let want = bytes.len().min(WRITE_CHUNK);
        let granted = self.fs.spend(want as u64)? as usize;
        self.fs.disk().inodes[self.inode].written.extend_from_slice(&bytes[..granted]);
        if granted < want {
            return Err(crashed());
        }
        Ok(granted)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.fs.call()?;
        let mut disk = self.fs.disk();
        let inode = &mut disk.inodes[self.inode];
        inode.synced = inode.written.clone();
        Ok(())
    }
}
