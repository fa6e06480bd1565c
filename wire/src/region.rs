//! Creating (marker side) and opening (recorder side) a ring file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::env;
use crate::futex;
use crate::layout::{header, Geometry, FORMAT_VERSION, MAGIC};
use crate::private;

/// File name suffix of a ring file: `<pid>.ring`.
pub const RING_SUFFIX: &str = ".ring";

/// Why a ring file could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("`{path}` is not a TimeGlass ring file")]
    NotARing { path: PathBuf },
    #[error("`{path}` was written by an incompatible TimeGlass (format {found}, expected {FORMAT_VERSION})")]
    Version { path: PathBuf, found: u64 },
    #[error("`{path}` is damaged: {what}")]
    Damaged { path: PathBuf, what: &'static str },
    #[error("refusing `{path}`: it is {why}; remove it, or point TIMEGLASS_RUNTIME_DIR at a directory of your own")]
    Unsafe {
        path: PathBuf,
        why: crate::private::Unsafe,
    },
}

/// The directory where markers create their ring files.
///
/// `TIMEGLASS_RUNTIME_DIR` when set (that is how `timeglass run` points its
/// child at a private directory); otherwise [`user_runtime_dir`] of the
/// calling user, so that `timeglass attach` can find a marker from its pid
/// alone.
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(env::RUNTIME_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // SAFETY: getuid never fails.
    user_runtime_dir(unsafe { libc::getuid() })
}

/// Where the markers of user `uid` put their ring files when no
/// `TIMEGLASS_RUNTIME_DIR` is set: a directory on tmpfs.
pub fn user_runtime_dir(uid: u32) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("timeglass-{uid}"))
}

/// The ring file of process `pid` inside `dir`.
pub fn ring_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}{RING_SUFFIX}"))
}

/// A mapped ring file: header, thread slots, event ring and scope table.
pub struct Region {
    map: MmapRaw,
    geometry: Geometry,
    path: PathBuf,
}

// SAFETY: every access to the mapping goes through atomics.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// Creates the ring file of `pid` in `dir`, fully initialised before it
    /// becomes visible under its final name (written aside, then renamed).
    pub fn create(dir: &Path, pid: u32, geometry: Geometry) -> Result<Region, RegionError> {
        assert!(geometry.is_valid(), "invalid ring geometry {geometry:?}");
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| RegionError::Io {
                action,
                path,
                source,
            }
        };
        private::ensure_dir(dir)?;
        let path = ring_path(dir, pid);
        let tmp = dir.join(format!("{pid}{RING_SUFFIX}.{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.set_len((geometry.total_words() * 8) as u64)
            .map_err(io_err("size", &tmp))?;
        let map = MmapRaw::map_raw(&file).map_err(io_err("map", &tmp))?;
        let region = Region {
            map,
            geometry,
            path: path.clone(),
        };
        let h = |i| region.word(i);
        h(header::VERSION).store(FORMAT_VERSION, Ordering::Relaxed);
        h(header::PID).store(u64::from(pid), Ordering::Relaxed);
        h(header::SLOT_COUNT).store(geometry.slot_count as u64, Ordering::Relaxed);
        h(header::RING_SLOTS).store(geometry.ring_slots as u64, Ordering::Relaxed);
        h(header::SCOPE_COUNT).store(geometry.scope_count as u64, Ordering::Relaxed);
        h(header::CREATED_NS).store(crate::monotonic_ns(), Ordering::Relaxed);
        h(header::MAGIC).store(MAGIC, Ordering::Release);
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        Ok(region)
    }

    /// Opens an existing ring file of this user, checking that it is one.
    pub fn open(path: &Path) -> Result<Region, RegionError> {
        Self::open_owned(path, private::current_uid())
    }

    /// Opens an existing ring file, checking that it is one, that user
    /// `owner` owns it (the user whose app is recorded) and that no other
    /// user may read or write it. A symbolic link is not followed.
    pub fn open_owned(path: &Path, owner: u32) -> Result<Region, RegionError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| RegionError::Io {
                action: "open",
                path: path.into(),
                source,
            })?;
        let meta = file.metadata().map_err(|source| RegionError::Io {
            action: "stat",
            path: path.into(),
            source,
        })?;
        private::check_file(&meta, path, owner)?;
        Self::from_file(&file, path)
    }

    fn from_file(file: &File, path: &Path) -> Result<Region, RegionError> {
        let len = file
            .metadata()
            .map_err(|source| RegionError::Io {
                action: "stat",
                path: path.into(),
                source,
            })?
            .len() as usize;
        if len < header::WORDS * 8 {
            return Err(RegionError::NotARing { path: path.into() });
        }
        let map = MmapRaw::map_raw(file).map_err(|source| RegionError::Io {
            action: "map",
            path: path.into(),
            source,
        })?;
        let mut region = Region {
            map,
            geometry: Geometry {
                slot_count: 0,
                ring_slots: 0,
                scope_count: 0,
            },
            path: path.into(),
        };
        if region.word(header::MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(RegionError::NotARing { path: path.into() });
        }
        let found = region.word(header::VERSION).load(Ordering::Relaxed);
        if found != FORMAT_VERSION {
            return Err(RegionError::Version {
                path: path.into(),
                found,
            });
        }
        let geometry = Geometry {
            slot_count: region.word(header::SLOT_COUNT).load(Ordering::Relaxed) as usize,
            ring_slots: region.word(header::RING_SLOTS).load(Ordering::Relaxed) as usize,
            scope_count: region.word(header::SCOPE_COUNT).load(Ordering::Relaxed) as usize,
        };
        if !geometry.is_valid() {
            return Err(RegionError::Damaged {
                path: path.into(),
                what: "bad table sizes",
            });
        }
        if geometry.total_words() * 8 > len {
            return Err(RegionError::Damaged {
                path: path.into(),
                what: "file is truncated",
            });
        }
        region.geometry = geometry;
        Ok(region)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn pid(&self) -> u32 {
        self.word(header::PID).load(Ordering::Relaxed) as u32
    }

    pub fn created_ns(&self) -> u64 {
        self.word(header::CREATED_NS).load(Ordering::Relaxed)
    }

    /// Requests started and not yet ended, as the marker counts them.
    pub fn inflight(&self) -> u64 {
        self.word(header::INFLIGHT).load(Ordering::Relaxed)
    }

    /// A request started. Wakes a sampler sleeping in [`Region::wait_for_request`],
    /// which costs a system call only on an idle-to-busy transition while a
    /// sampler actually sleeps.
    pub fn inc_inflight(&self) {
        let before = self.word(header::INFLIGHT).fetch_add(1, Ordering::SeqCst);
        if before == 0 && self.word(header::SAMPLER_SLEEPING).load(Ordering::SeqCst) != 0 {
            futex::wake(self.word(header::INFLIGHT));
        }
    }

    /// Sleeps until a request is in flight or `timeout` passes, without
    /// polling. Returns whether a request is in flight.
    pub fn wait_for_request(&self, timeout: std::time::Duration) -> bool {
        let sleeping = self.word(header::SAMPLER_SLEEPING);
        let inflight = self.word(header::INFLIGHT);
        // Dekker-style: announce the sleep, then re-check. A marker that
        // incremented before our announcement is seen by the check; one that
        // increments after it sees the announcement and wakes us.
        sleeping.store(1, Ordering::SeqCst);
        if inflight.load(Ordering::SeqCst) == 0 {
            futex::wait_while_zero(inflight, timeout);
        }
        sleeping.store(0, Ordering::SeqCst);
        inflight.load(Ordering::SeqCst) > 0
    }

    pub fn dec_inflight(&self) {
        // Never wrap below zero, even if an end arrives without its start
        // (the marker was set up in the middle of a request).
        let w = self.word(header::INFLIGHT);
        let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// Hands out the next request id (ids start at 1).
    pub fn next_request_id(&self) -> u64 {
        self.word(header::NEXT_REQUEST_ID)
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }

    /// Events the marker had to drop before they reached the ring.
    pub fn dropped(&self) -> u64 {
        self.word(header::DROPPED).load(Ordering::Relaxed)
    }

    pub fn count_dropped(&self) {
        self.word(header::DROPPED).fetch_add(1, Ordering::Relaxed);
    }

    /// Threads that could not get a slot because the table was full.
    pub fn slotless_threads(&self) -> u64 {
        self.word(header::SLOTLESS_THREADS).load(Ordering::Relaxed)
    }

    /// Records published since the file was created.
    pub fn records_written(&self) -> u64 {
        self.word(header::RECORDS_WRITTEN).load(Ordering::Relaxed)
    }

    /// Called by the recorder each time it drains the ring.
    pub fn beat(&self) {
        self.word(header::READER_HEARTBEAT_NS)
            .store(crate::monotonic_ns(), Ordering::Relaxed);
    }

    /// When a recorder last read the ring (monotonic ns), if ever.
    pub fn last_reader_beat(&self) -> Option<u64> {
        Some(
            self.word(header::READER_HEARTBEAT_NS)
                .load(Ordering::Relaxed),
        )
        .filter(|&t| t != 0)
    }

    pub(crate) fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index * 8 + 8 <= self.map.len());
        // SAFETY: the mapping is at least `index * 8 + 8` bytes long, page
        // aligned (so 8-byte aligned), and lives as long as `self`.
        unsafe { &*(self.map.as_ptr().add(index * 8) as *const AtomicU64) }
    }

    /// The words `[start, start + len)`, bounds-checked once.
    pub(crate) fn words(&self, start: usize, len: usize) -> &[AtomicU64] {
        assert!((start + len) * 8 <= self.map.len());
        // SAFETY: in bounds (checked above), aligned, and only accessed atomically.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(start * 8) as *const AtomicU64, len)
        }
    }
}
