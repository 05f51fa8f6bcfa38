//! Durable balances: one memory-mapped file of ledger rows per core, recovery and reading.
//!
//! # Contract
//!
//! - Each core owns `core-<n>.ledger` in the state directory and writes, per peer, its
//!   `posted_local` (see the Durability section of [`crate::engine::Ledger`]) with plain stores
//!   into a shared mapping. The page cache keeps a store once it is made, so `kill -9` at any
//!   instant loses nothing that was committed. A post is stored before the engine returns the
//!   Fulfill to relay, so nothing relayed upstream can be missing from the files.
//! - The durable balance of a peer is the sum of its rows over the files of the current epoch.
//! - Holds are never written: after a crash every hold is gone, i.e. released.
//! - The mapping is pre-faulted at start (populated, then every row written back), so a post is
//!   a few stores, never a page fault or a syscall. `fdatasync` runs on a separate thread
//!   ([`spawn_flusher`]), never on a core: a blocking `msync` in a core's task queue would stall
//!   every packet on that core. (After each writeback the kernel write-protects the cleaned
//!   page again, so the next post to it takes one minor fault per interval; that is the price
//!   of bounding power-loss exposure and is why the interval is a flag.)
//! - A file whose magic, layout version, header checksum, size or a row checksum is wrong is
//!   refused with an error naming the file and the problem; nothing is ever reset silently.
//!
//! - One router at a time: [`recover`] takes an exclusive `flock` on `dir/lock` and the router
//!   holds it while it runs (the kernel drops it when the process dies, even by `kill -9`). A
//!   second router on the same directory is refused; `ilp-router balances` takes no lock.
//!
//! Non-goals: settlement, and sharing a directory between hosts.
//!
//! # File layout (little endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `ILPLEDGR` |
//! | 8 | 4 | layout version ([`VERSION`]) |
//! | 12 | 4 | header length in bytes (a multiple of 64; rows start there) |
//! | 16 | 8 | epoch (see Recovery) |
//! | 24 | 4 | this file's core index |
//! | 28 | 4 | core count of the set the file belongs to |
//! | 32 | 4 | peer (row) count |
//! | 36 | 4 | row length (64) |
//! | 40 | 8 | checksum: first 8 bytes of SHA-256 of the header with this field zeroed |
//! | 48 | 16 | zero |
//! | 64 | … | peer names: `u16` length + UTF-8 bytes each, in row order; zero padding |
//!
//! A row is 64 bytes, eight `u64` words: `gen`, then two slots of `(lo, hi, check)`. The row's
//! value is the `i128` in slot `gen & 1`. A write fills the *other* slot and then stores
//! `gen + 1` (one aligned 8-byte store: the commit point). A crash between the two leaves the
//! previous value committed; a reader that runs while the router writes re-reads `gen` after the
//! slot and retries if it moved (a seqlock over two slots), so it never sees a torn `i128`.
//! `check` ties `lo` and `hi` together so a damaged row is refused.
//!
//! # Recovery
//!
//! [`recover`] reads every `core-*.ledger` file, keeps those of the highest epoch (older ones
//! were already folded into it), sums the rows per peer name and writes a new set for the
//! current core count at epoch + 1: core 0's file holds every sum, the others zeros. New files
//! are written under `.tmp` names, synced, and renamed core 0 first, so a crash during the fold
//! leaves either the old set intact (no new file renamed yet) or a new core-0 file that alone
//! holds every sum (the other new files hold zeros): nothing is counted twice or lost. Peers
//! in the config match rows by name; a new peer starts at zero; a peer that is no longer
//! configured keeps its row (reported by [`Recovered::removed`]).
//!
//! Row `i` is the peer with id `i`. A new set has a row for each of the `peers_max` slots: the
//! configured peers, then unnamed spare rows, then the rows of peers no longer configured. A
//! peer a reload adds takes the next spare row: [`name_row`] appends `<epoch> <row> <name>` to
//! `rows.log` and syncs it before the peer can post, and recovery (and [`balances`]) read the
//! names of spare rows from the lines of the current epoch, the last line of a row winning (a
//! refused reload may have named one that was never posted to). A balance in a row nothing
//! names is refused like a damaged file. A fold writes the names into the new headers and
//! removes the log.
//!
//! Over 800 lines because its unit tests live beside the code (the code is under 750).

use crate::engine::{PeerId, PostedStore};
use memmap2::{Mmap, MmapMut, MmapOptions};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The file magic.
pub const MAGIC: [u8; 8] = *b"ILPLEDGR";
/// The layout version this build reads and writes.
pub const VERSION: u32 = 1;
/// Bytes per row.
pub const ROW_LEN: usize = 64;
const ROW_WORDS: usize = ROW_LEN / 8;
const FIXED_LEN: usize = 64;
const CHECK_SALT: u64 = 0x6c65_6467_6572_2121;

const _: () = assert!(ROW_LEN % 8 == 0 && ROW_WORDS >= 7);
const _: () = assert!(size_of::<Row>() == ROW_LEN);

/// One row: `gen`, then two slots of `(lo, hi, check)`, then a spare word.
type Row = [AtomicU64; ROW_WORDS];
const _: () = assert!(FIXED_LEN % ROW_LEN == 0);

/// Why a state directory cannot be used.
#[derive(Debug)]
pub enum StateError {
    /// An I/O failure on a path.
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A file is not a ledger file of this layout, or is damaged.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StateError::Corrupt { path, problem } => write!(
                f,
                "{}: refusing the state file: {problem} (it is never reset; move it away \
                 only if its balances are known to be lost)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StateError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, problem: impl Into<String>) -> StateError {
    StateError::Corrupt {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The path of core `core`'s file in `dir`.
pub fn core_file(dir: &Path, core: usize) -> PathBuf {
    dir.join(format!("core-{core}.ledger"))
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

fn check_word(lo: u64, hi: u64) -> u64 {
    lo ^ hi.rotate_left(29) ^ CHECK_SALT
}

/// Writes `value` into `row` as its next generation. Only one thread may write a row.
#[inline]
fn write_row(row: &Row, value: i128) {
    let gen = row[0].load(Ordering::Relaxed);
    let next = gen.wrapping_add(1);
    let slot = 1 + 3 * (next & 1) as usize;
    // The slot about to be written is the one generation `gen - 1` named. Without this fence
    // its stores could become visible before the previous write's generation store, and a
    // reader still on `gen - 1` would see a torn slot under an unchanged generation (the
    // seqlock writer's fence; it compiles to nothing on x86, whose stores are not reordered).
    fence(Ordering::Release);
    let lo = value as u64;
    let hi = (value >> 64) as u64;
    row[slot].store(lo, Ordering::Relaxed);
    row[slot + 1].store(hi, Ordering::Relaxed);
    row[slot + 2].store(check_word(lo, hi), Ordering::Relaxed);
    // The commit point: the slot is complete before the generation names it.
    row[0].store(next, Ordering::Release);
}

/// Reads a row's committed value; `None` if its check word is wrong (a damaged row). Retries
/// while a writer moves the generation under it (bounded; a writer commits in nanoseconds).
fn read_row(row: &Row) -> Option<i128> {
    for _ in 0..1_000_000 {
        let gen = row[0].load(Ordering::Acquire);
        let slot = 1 + 3 * (gen & 1) as usize;
        let lo = row[slot].load(Ordering::Relaxed);
        let hi = row[slot + 1].load(Ordering::Relaxed);
        let check = row[slot + 2].load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if row[0].load(Ordering::Relaxed) != gen {
            std::hint::spin_loop();
            continue;
        }
        if check != check_word(lo, hi) {
            return None;
        }
        return Some(((u128::from(hi) << 64) | u128::from(lo)) as i128);
    }
    panic!("a ledger row kept changing for a million reads");
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// A file's header, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    epoch: u64,
    core: u32,
    cores: u32,
    names: Vec<String>,
    header_len: usize,
}

fn header_len_for(names: &[String]) -> usize {
    let names_len: usize = names.iter().map(|n| 2 + n.len()).sum();
    (FIXED_LEN + names_len).div_ceil(ROW_LEN) * ROW_LEN
}

fn checksum(header: &[u8]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(&header[..40]);
    hasher.update([0u8; 8]);
    hasher.update(&header[48..]);
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn encode_header(h: &Header) -> Vec<u8> {
    let len = header_len_for(&h.names);
    let mut b = vec![0u8; len];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    b[16..24].copy_from_slice(&h.epoch.to_le_bytes());
    b[24..28].copy_from_slice(&h.core.to_le_bytes());
    b[28..32].copy_from_slice(&h.cores.to_le_bytes());
    b[32..36].copy_from_slice(&(h.names.len() as u32).to_le_bytes());
    b[36..40].copy_from_slice(&(ROW_LEN as u32).to_le_bytes());
    let mut at = FIXED_LEN;
    for name in &h.names {
        let n = u16::try_from(name.len()).expect("peer names are shorter than an ILP address");
        b[at..at + 2].copy_from_slice(&n.to_le_bytes());
        b[at + 2..at + 2 + name.len()].copy_from_slice(name.as_bytes());
        at += 2 + name.len();
    }
    let sum = checksum(&b);
    b[40..48].copy_from_slice(&sum.to_le_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks and parses the header of `bytes` (a whole file).
fn decode_header(path: &Path, bytes: &[u8]) -> Result<Header, StateError> {
    if bytes.len() < FIXED_LEN {
        return Err(corrupt(
            path,
            format!(
                "{} bytes, shorter than a header ({FIXED_LEN}): truncated",
                bytes.len()
            ),
        ));
    }
    if bytes[0..8] != MAGIC {
        return Err(corrupt(
            path,
            format!(
                "bad magic {:02x?}: not an ilp-router ledger file",
                &bytes[0..8]
            ),
        ));
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(corrupt(
            path,
            format!("layout version {version}; this build reads version {VERSION}"),
        ));
    }
    let header_len = u32_at(bytes, 12) as usize;
    let peers = u32_at(bytes, 32) as usize;
    let row_len = u32_at(bytes, 36) as usize;
    if header_len < FIXED_LEN || header_len % ROW_LEN != 0 || header_len > bytes.len() {
        return Err(corrupt(
            path,
            format!(
                "header length {header_len} does not fit a file of {} bytes",
                bytes.len()
            ),
        ));
    }
    let stored = u64_at(bytes, 40);
    if checksum(&bytes[..header_len]) != stored {
        return Err(corrupt(
            path,
            "header checksum mismatch: the header is damaged",
        ));
    }
    if row_len != ROW_LEN {
        return Err(corrupt(
            path,
            format!("row length {row_len}, expected {ROW_LEN}"),
        ));
    }
    let expected = header_len + peers * ROW_LEN;
    if bytes.len() != expected {
        return Err(corrupt(
            path,
            format!(
                "{} bytes, but the header describes {peers} rows ({expected} bytes): truncated \
                 or extended",
                bytes.len()
            ),
        ));
    }
    let mut names = Vec::with_capacity(peers);
    let mut at = FIXED_LEN;
    for i in 0..peers {
        let ok = at + 2 <= header_len;
        let n = if ok {
            usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
        } else {
            usize::MAX
        };
        let name = (ok && at + 2 + n <= header_len)
            .then(|| std::str::from_utf8(&bytes[at + 2..at + 2 + n]).ok())
            .flatten()
            .ok_or_else(|| corrupt(path, format!("peer name {i} is not readable")))?;
        names.push(name.to_owned());
        at += 2 + n;
    }
    Ok(Header {
        epoch: u64_at(bytes, 16),
        core: u32_at(bytes, 24),
        cores: u32_at(bytes, 28),
        names,
        header_len,
    })
}

/// The rows of a mapped file as atomic words.
fn rows_of(map: &[u8], header_len: usize, peers: usize) -> &[Row] {
    let rows = &map[header_len..header_len + peers * ROW_LEN];
    assert_eq!(
        rows.as_ptr() as usize % 8,
        0,
        "rows are 8-byte aligned (mapping is page aligned, header a multiple of 64)"
    );
    // SAFETY: the range is inside the mapping and 8-byte aligned (asserted); AtomicU64 has the
    // size and alignment of u64 and any bit pattern is valid. Other writers of the file use
    // atomic stores too (the router's cores), so concurrent access is through atomics only.
    unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<Row>(), peers) }
}

// ---------------------------------------------------------------------------------------------
// Reading a directory
// ---------------------------------------------------------------------------------------------

/// One checked file's contents.
#[derive(Debug)]
struct FileState {
    path: PathBuf,
    header: Header,
    values: Vec<i128>,
}

/// Reads and checks one file (read-only mapping, seqlock reads: safe while a router writes).
fn read_file(path: &Path) -> Result<FileState, StateError> {
    let file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    if len == 0 {
        return Err(corrupt(path, "empty file: truncated"));
    }
    // SAFETY: a read-only shared mapping; rows are read through atomics only (see rows_of).
    // The router only ever writes rows, never the header or the length, while it runs.
    let map: Mmap = unsafe { MmapOptions::new().map(&file) }.map_err(io_error(path))?;
    let header = decode_header(path, &map)?;
    let rows = rows_of(&map, header.header_len, header.names.len());
    let mut values = Vec::with_capacity(header.names.len());
    for (i, name) in header.names.iter().enumerate() {
        let value = read_row(&rows[i])
            .ok_or_else(|| corrupt(path, format!("row {i} (peer {name:?}): bad row checksum")))?;
        values.push(value);
    }
    Ok(FileState {
        path: path.to_owned(),
        header,
        values,
    })
}

/// The ledger files of `dir`, by core index.
fn list(dir: &Path) -> Result<Vec<(usize, PathBuf)>, StateError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let core = name
            .strip_prefix("core-")
            .and_then(|r| r.strip_suffix(".ledger"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(core) = core {
            found.push((core, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The current set's files: every file checked, those of the highest epoch kept.
fn current_set(dir: &Path) -> Result<(u64, Vec<FileState>, Vec<PathBuf>), StateError> {
    let mut files = Vec::new();
    for (core, path) in list(dir)? {
        let state = read_file(&path)?;
        if state.header.core as usize != core {
            return Err(corrupt(
                &path,
                format!("the header says core {}", state.header.core),
            ));
        }
        files.push(state);
    }
    let epoch = files.iter().map(|f| f.header.epoch).max().unwrap_or(0);
    let (current, stale): (Vec<FileState>, Vec<FileState>) =
        files.into_iter().partition(|f| f.header.epoch == epoch);
    Ok((epoch, current, stale.into_iter().map(|f| f.path).collect()))
}

/// Per peer name, the sum over the current set, in first-seen order (spare rows, unnamed,
/// hold nothing: [`name_rows`] checked).
fn sum_by_name(files: &[FileState]) -> Vec<(String, i128)> {
    let mut sums: Vec<(String, i128)> = Vec::new();
    for file in files {
        for (name, &value) in file.header.names.iter().zip(&file.values) {
            if name.is_empty() {
                continue;
            }
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) => *sum = sum.checked_add(value).expect("balance overflow"),
                None => sums.push((name.clone(), value)),
            }
        }
    }
    sums
}

/// The durable balance of every peer the state in `dir` holds (for `ilp-router balances`);
/// safe while the router runs.
pub fn balances(dir: &Path) -> Result<Vec<(String, i128)>, StateError> {
    if !dir.is_dir() {
        return Err(StateError::Io {
            path: dir.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such state directory"),
        });
    }
    let (epoch, mut current, _) = current_set(dir)?;
    name_rows(dir, epoch, &mut current)?;
    Ok(sum_by_name(&current))
}

// ---------------------------------------------------------------------------------------------
// Rows named while running
// ---------------------------------------------------------------------------------------------

/// The file that names spare rows given to peers added while the router runs.
pub const ROWS_LOG: &str = "rows.log";

/// Gives the spare row `row` of every file of `epoch` to the peer `name` (a peer added by a
/// reload): appends `<epoch> <row> <name>` to `rows.log` and syncs it, before the peer can
/// post. Recovery reads the names of that epoch's spare rows from it; a fold writes them into
/// the new headers and removes the log.
pub fn name_row(dir: &Path, epoch: u64, row: usize, name: &str) -> Result<(), StateError> {
    debug_assert!(!name.is_empty() && !name.contains(char::is_whitespace));
    let path = dir.join(ROWS_LOG);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_error(&path))?;
    file.write_all(format!("{epoch} {row} {name}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(io_error(&path))?;
    // The first line also needs the directory entry on disk.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Names the spare rows of `files` (all of `epoch`) from `rows.log`, and refuses a file with a
/// balance in a row that nothing names. A torn last line (no newline: the router died while
/// writing it) names nothing: its peer never posted, since a post waits for the sync.
fn name_rows(dir: &Path, epoch: u64, files: &mut [FileState]) -> Result<(), StateError> {
    let path = dir.join(ROWS_LOG);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(StateError::Io { path, source: e }),
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    // Per file and row: unnamed in the header.
    let spares: Vec<Vec<bool>> = files
        .iter()
        .map(|f| f.header.names.iter().map(String::is_empty).collect())
        .collect();
    for (k, line) in complete.lines().enumerate() {
        let mut fields = line.split(' ');
        let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(e), Some(r), Some(n), None) if !n.is_empty() => e
                .parse::<u64>()
                .ok()
                .zip(r.parse::<usize>().ok())
                .map(|(e, r)| (e, r, n)),
            _ => None,
        };
        let (line_epoch, row, name) = parsed
            .ok_or_else(|| corrupt(&path, format!("line {} is not \"epoch row name\"", k + 1)))?;
        if line_epoch != epoch {
            // Folded by an earlier recovery into the headers of a later set.
            continue;
        }
        for (file, spare) in files.iter_mut().zip(&spares) {
            match file.header.names.get_mut(row) {
                // The last line for a spare row wins: a reload that was refused after naming
                // it never published its peer, so the row was never posted to.
                Some(slot) if spare.get(row) == Some(&true) || slot == name => {
                    *slot = name.to_owned()
                }
                Some(slot) => {
                    return Err(corrupt(
                        &path,
                        format!(
                            "line {} gives row {row} to {name:?}, but {} names it {slot:?}",
                            k + 1,
                            file.path.display()
                        ),
                    ))
                }
                None => {
                    return Err(corrupt(
                        &path,
                        format!(
                            "line {} names row {row}, past the {} rows of {}",
                            k + 1,
                            file.header.names.len(),
                            file.path.display()
                        ),
                    ))
                }
            }
        }
    }
    for file in files.iter() {
        let unnamed = file
            .header
            .names
            .iter()
            .zip(&file.values)
            .position(|(name, &value)| name.is_empty() && value != 0);
        if let Some(row) = unnamed {
            return Err(corrupt(
                &file.path,
                format!("row {row} holds a balance but no peer name (none in {ROWS_LOG} either)"),
            ));
        }
    }
    Ok(())
}

/// `{"peers":[{"name":…,"posted":"…"}]}` for `balances`.
pub fn balances_json(balances: &[(String, i128)]) -> serde_json::Value {
    let peers: Vec<serde_json::Value> = balances
        .iter()
        .map(|(name, posted)| serde_json::json!({ "name": name, "posted": posted.to_string() }))
        .collect();
    serde_json::json!({ "peers": peers })
}

// ---------------------------------------------------------------------------------------------
// Recovery and the running files
// ---------------------------------------------------------------------------------------------

/// One core's mapped file: the [`PostedStore`] the core's engine writes to.
pub struct CoreFile {
    path: PathBuf,
    /// Owned so the mapping lives as long as `rows`; never remapped.
    _map: MmapMut,
    /// The first row, inside `_map` (computed once: a post is then an index and four stores).
    rows: NonNull<Row>,
    peers: usize,
    configured: usize,
}

// SAFETY: `rows` points into the mapping that the CoreFile owns; moving the CoreFile to
// another thread moves that ownership with it, and the mapping's address never changes.
unsafe impl Send for CoreFile {}

impl fmt::Debug for CoreFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreFile")
            .field("path", &self.path)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl CoreFile {
    fn open(path: &Path, configured: usize) -> Result<CoreFile, StateError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        // SAFETY: a shared read-write mapping of a file this process just wrote and that only
        // this core writes from now on; rows are accessed through atomics only.
        let map =
            unsafe { MmapOptions::new().populate().map_mut(&file) }.map_err(io_error(path))?;
        let header = decode_header(path, &map)?;
        assert!(configured <= header.names.len(), "recover wrote every peer");
        let peers = header.names.len();
        let mut map = map;
        // Checks the range and alignment of the rows.
        let _ = rows_of(&map, header.header_len, peers);
        // The pointer we write through is derived from the mapping's mutable pointer (write
        // provenance), not from a shared slice of its bytes.
        // SAFETY: `header_len + peers * ROW_LEN` is inside the mapping (rows_of checked it).
        let first = unsafe { map.as_mut_ptr().add(header.header_len) }.cast::<Row>();
        let rows = NonNull::new(first).expect("a mapping is never at address 0");
        let file = CoreFile {
            path: path.to_owned(),
            _map: map,
            rows,
            peers,
            configured,
        };
        // Pre-fault for writing: store every row's generation back, so the first post on the
        // packet path finds the page present and writable.
        for index in 0..peers {
            let row = file.row(PeerId(index as u16));
            let gen = row[0].load(Ordering::Relaxed);
            row[0].store(gen, Ordering::Relaxed);
        }
        Ok(file)
    }

    #[inline]
    fn row(&self, peer: PeerId) -> &Row {
        let index = peer.index();
        assert!(index < self.peers, "peer {index} of {}", self.peers);
        // SAFETY: `rows` is the start of `peers` rows inside the owned mapping (see rows_of),
        // and `index < peers`.
        unsafe { &*self.rows.as_ptr().add(index) }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the mapping to disk (blocking; for a graceful stop).
    pub fn flush(&self) -> io::Result<()> {
        self._map.flush()
    }
}

impl PostedStore for CoreFile {
    fn load(&self, peer: PeerId) -> i128 {
        read_row(self.row(peer)).expect("rows were checked when recovered")
    }

    #[inline]
    fn store(&mut self, peer: PeerId, value: i128) {
        debug_assert!(peer.index() < self.configured, "only peers in slots post");
        write_row(self.row(peer), value);
    }
}

/// The exclusive lock on a state directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

fn lock_dir(dir: &Path) -> Result<DirLock, StateError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    // SAFETY: flock on a file descriptor this function owns; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let source = io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::EWOULDBLOCK) => StateError::Io {
                path,
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another router is running on this state directory",
                ),
            },
            _ => StateError::Io { path, source },
        });
    }
    Ok(DirLock { _file: file })
}

/// What [`recover`] found and set up.
#[derive(Debug)]
pub struct Recovered {
    /// Held while the router runs: no second router can open the directory.
    pub lock: DirLock,
    /// One mapped file per core, in core order.
    pub files: Vec<CoreFile>,
    /// The recovered posted balance of each configured peer (in config order).
    pub posted: Vec<i128>,
    /// Peers the state holds that the config no longer has, with their balances (kept).
    pub removed: Vec<(String, i128)>,
    /// Files of an older epoch that were already folded, and removed.
    pub stale: Vec<PathBuf>,
    /// The epoch of the new set (what [`name_row`] writes).
    pub epoch: u64,
}

fn write_new_file(path: &Path, header: &Header, values: &[i128]) -> Result<(), StateError> {
    let mut bytes = encode_header(header);
    for &value in values {
        let mut row = [0u64; ROW_WORDS];
        let (lo, hi) = (value as u64, (value >> 64) as u64);
        row[1] = lo;
        row[2] = hi;
        row[3] = check_word(lo, hi);
        for word in row {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(&bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Opens the state in `dir` (created if missing) for `cores` cores and the configured peer
/// `names`: checks every file, sums the current set, folds it into a new set (see the module
/// docs), and maps one file per core, pre-faulted.
pub fn recover(
    dir: &Path,
    names: &[&str],
    cores: usize,
    slots: usize,
) -> Result<Recovered, StateError> {
    assert!(cores >= 1, "at least one core");
    assert!(slots >= names.len(), "a slot for each configured peer");
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let lock = lock_dir(dir)?;
    let (epoch, mut current, stale) = current_set(dir)?;
    name_rows(dir, epoch, &mut current)?;
    let sums = sum_by_name(&current);
    let posted: Vec<i128> = names
        .iter()
        .map(|n| sums.iter().find(|(s, _)| s == n).map_or(0, |&(_, v)| v))
        .collect();
    let removed: Vec<(String, i128)> = sums
        .into_iter()
        .filter(|(s, _)| !names.contains(&s.as_str()))
        .collect();
    // Rows 0..slots are the peers' slots (the configured ones, then spares a reload may name);
    // the rows of peers no longer configured follow.
    let mut all_names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    all_names.resize(slots, String::new());
    all_names.extend(removed.iter().map(|(n, _)| n.clone()));
    let mut totals = posted.clone();
    totals.resize(slots, 0);
    totals.extend(removed.iter().map(|&(_, v)| v));
    let zeros = vec![0i128; totals.len()];

    let next = epoch + 1;
    let tmp = |core: usize| dir.join(format!("core-{core}.ledger.tmp"));
    for core in 0..cores {
        let header = Header {
            epoch: next,
            core: core as u32,
            cores: cores as u32,
            names: all_names.clone(),
            header_len: header_len_for(&all_names),
        };
        let values = if core == 0 { &totals } else { &zeros };
        write_new_file(&tmp(core), &header, values)?;
    }
    // Core 0 first: from the moment it is in place it alone holds every sum.
    for core in 0..cores {
        let to = core_file(dir, core);
        fs::rename(tmp(core), &to).map_err(io_error(&to))?;
    }
    let mut removed_files = Vec::new();
    for file in current.iter().filter(|f| f.header.core as usize >= cores) {
        fs::remove_file(&file.path).map_err(io_error(&file.path))?;
        removed_files.push(file.path.clone());
    }
    for path in stale {
        if path.exists() && read_file(&path).is_ok_and(|f| f.header.epoch < next) {
            fs::remove_file(&path).map_err(io_error(&path))?;
            removed_files.push(path);
        }
    }
    // The new headers name every row the log named: it has done its work.
    let log = dir.join(ROWS_LOG);
    if log.exists() {
        fs::remove_file(&log).map_err(io_error(&log))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    let files = (0..cores)
        .map(|core| CoreFile::open(&core_file(dir, core), slots))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Recovered {
        lock,
        files,
        posted,
        removed,
        stale: removed_files,
        epoch: next,
    })
}

/// Runs `fdatasync` on every core file every `interval` until `stop` is set, then once more;
/// off the cores (see the module docs). Returns the thread's handle.
pub fn spawn_flusher(
    files: Vec<PathBuf>,
    interval: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let handles: Vec<File> = files
        .iter()
        .map(|p| OpenOptions::new().read(true).write(true).open(p))
        .collect::<io::Result<_>>()?;
    std::thread::Builder::new()
        .name("ledger-sync".into())
        .spawn(move || {
            let sync = || {
                for (file, path) in handles.iter().zip(&files) {
                    if let Err(e) = file.sync_data() {
                        tracing::warn!(path = %path.display(), "fdatasync failed: {e}");
                    }
                }
            };
            let step = Duration::from_millis(20);
            let mut since = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                since += step;
                if interval.is_some_and(|i| since >= i) {
                    sync();
                    since = Duration::ZERO;
                }
            }
            sync();
        })
}

#[cfg(test)]
mod test {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ilp-router-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sums(dir: &Path) -> Vec<(String, i128)> {
        balances(dir).unwrap()
    }

    fn pairs(list: &[(&str, i128)]) -> Vec<(String, i128)> {
        list.iter().map(|&(n, v)| (n.to_owned(), v)).collect()
    }

    #[test]
    fn rows_round_trip_and_survive_a_reopen() {
        let dir = temp_dir("reopen");
        let mut r = recover(&dir, &["alice", "bob"], 2, 4).unwrap();
        assert_eq!(r.posted, vec![0, 0]);
        assert!(r.removed.is_empty());
        r.files[0].store(PeerId(0), 1_000);
        r.files[1].store(PeerId(0), -1);
        r.files[1].store(PeerId(1), i128::MIN + 5);
        r.files[1].store(PeerId(1), -(1i128 << 100));
        assert_eq!(r.files[1].load(PeerId(1)), -(1i128 << 100));
        // As `balances` sees it while the files are mapped for writing.
        assert_eq!(
            sums(&dir),
            pairs(&[("alice", 999), ("bob", -(1i128 << 100))])
        );
        drop(r); // like a kill: nothing is flushed by hand
        let r = recover(&dir, &["alice", "bob"], 2, 4).unwrap();
        assert_eq!(r.posted, vec![999, -(1i128 << 100)]);
        assert_eq!(r.files[0].load(PeerId(0)), 999, "folded into core 0");
        assert_eq!(r.files[1].load(PeerId(0)), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn holds_are_gone_after_a_restart() {
        use crate::engine::{AccountConfig, CoreId, Ledger};
        let dir = temp_dir("holds");
        let config = [AccountConfig {
            home: CoreId(0),
            max_balance: 100,
            lease_chunk: 0,
            posted: 0,
            shared: false,
        }];
        let mut r = recover(&dir, &["alice"], 1, 3).unwrap();
        let store = r.files.remove(0);
        let mut ledger = Ledger::with_store(CoreId(0), 1, &config, Box::new(store));
        assert!(ledger.hold(PeerId(0), 30));
        ledger.post_hold(PeerId(0), 30);
        assert!(ledger.hold(PeerId(0), 50), "in flight at the crash");
        drop((ledger, r)); // like a kill: the process and its lock are gone
        let mut r = recover(&dir, &["alice"], 1, 3).unwrap();
        assert_eq!(r.posted, vec![30], "the hold was never committed");
        let config = [AccountConfig {
            posted: r.posted[0],
            ..config[0]
        }];
        let store = r.files.remove(0);
        let mut ledger = Ledger::with_store(CoreId(0), 1, &config, Box::new(store));
        assert_eq!(ledger.account(PeerId(0)).pending_in(), 0);
        assert!(
            ledger.hold(PeerId(0), 70),
            "the old hold no longer uses headroom"
        );
        assert!(!ledger.hold(PeerId(0), 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_router_at_a_time() {
        let dir = temp_dir("lock");
        let first = recover(&dir, &["alice"], 1, 3).unwrap();
        let error = recover(&dir, &["alice"], 1, 3).unwrap_err().to_string();
        assert!(error.contains("another router is running"), "{error}");
        assert_eq!(sums(&dir), pairs(&[("alice", 0)]), "balances needs no lock");
        drop(first);
        assert!(
            recover(&dir, &["alice"], 1, 3).is_ok(),
            "released with the router"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_peers_start_at_zero_and_removed_peers_keep_their_rows() {
        let dir = temp_dir("peers");
        let mut r = recover(&dir, &["alice", "bob"], 1, 4).unwrap();
        r.files[0].store(PeerId(0), 5);
        r.files[0].store(PeerId(1), -5);
        drop(r);
        let mut r = recover(&dir, &["carol", "alice"], 1, 4).unwrap();
        assert_eq!(r.posted, vec![0, 5], "matched by name; carol is new");
        assert_eq!(r.removed, pairs(&[("bob", -5)]));
        r.files[0].store(PeerId(0), 9);
        drop(r);
        assert_eq!(
            sums(&dir),
            pairs(&[("carol", 9), ("alice", 5), ("bob", -5)])
        );
        let r = recover(&dir, &["alice", "bob"], 1, 4).unwrap();
        assert_eq!(r.posted, vec![5, -5], "bob's row was kept");
        assert_eq!(r.removed, pairs(&[("carol", 9)]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_row_named_while_running_keeps_its_balance_across_a_crash() {
        let dir = temp_dir("named");
        let mut r = recover(&dir, &["alice"], 2, 3).unwrap();
        // A reload adds carol in slot 1: named (synced) first, then she posts on both cores.
        name_row(&dir, r.epoch, 1, "carol").unwrap();
        r.files[0].store(PeerId(1), 7);
        r.files[1].store(PeerId(1), -2);
        r.files[0].store(PeerId(0), 3);
        // Read while the router runs (`ilp-router balances`).
        assert_eq!(sums(&dir), pairs(&[("alice", 3), ("carol", 5)]));
        // A crash: the next start finds her by name, configured or not.
        drop(r);
        let r = recover(&dir, &["carol", "alice"], 1, 3).unwrap();
        assert_eq!(r.posted, vec![5, 3]);
        assert!(!dir.join(ROWS_LOG).exists(), "folded into the headers");
        drop(r);
        let r = recover(&dir, &["alice"], 1, 3).unwrap();
        assert_eq!(r.removed, pairs(&[("carol", 5)]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_last_name_of_a_spare_row_wins_and_a_torn_line_names_nothing() {
        let dir = temp_dir("renamed");
        let mut r = recover(&dir, &["alice"], 1, 3).unwrap();
        // A refused reload named slot 1 for dave; the next one gives it to erin, who posts.
        name_row(&dir, r.epoch, 1, "dave").unwrap();
        name_row(&dir, r.epoch, 1, "erin").unwrap();
        r.files[0].store(PeerId(1), 4);
        // The router dies while naming slot 2.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.join(ROWS_LOG))
            .unwrap();
        log.write_all(format!("{} 2 fra", r.epoch).as_bytes())
            .unwrap();
        assert_eq!(sums(&dir), pairs(&[("alice", 0), ("erin", 4)]));
        drop(r);
        let r = recover(&dir, &["erin"], 1, 3).unwrap();
        assert_eq!(r.posted, vec![4]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_balance_in_a_row_nothing_names_is_refused() {
        let dir = temp_dir("unnamed");
        let mut r = recover(&dir, &["alice"], 1, 3).unwrap();
        r.files[0].store(PeerId(2), 9);
        drop(r);
        let error = recover(&dir, &["alice"], 1, 3).unwrap_err().to_string();
        assert!(
            error.contains("row 2 holds a balance but no peer name"),
            "{error}"
        );
        // A log line naming a row the header already gives to another peer is refused too.
        fs::remove_dir_all(&dir).unwrap();
        let dir = temp_dir("clash");
        let r = recover(&dir, &["alice"], 1, 3).unwrap();
        name_row(&dir, r.epoch, 0, "bob").unwrap();
        drop(r);
        let error = recover(&dir, &["alice"], 1, 3).unwrap_err().to_string();
        assert!(error.contains("gives row 0 to \"bob\""), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_core_count_can_change() {
        let dir = temp_dir("fold");
        let mut r = recover(&dir, &["alice"], 3, 3).unwrap();
        for (core, file) in r.files.iter_mut().enumerate() {
            file.store(PeerId(0), 10 * (core as i128 + 1));
        }
        drop(r);
        let r = recover(&dir, &["alice"], 1, 3).unwrap();
        assert_eq!(r.posted, vec![60]);
        assert_eq!(
            list(&dir).unwrap().len(),
            1,
            "core-1 and core-2 were folded away"
        );
        drop(r);
        let r = recover(&dir, &["alice"], 2, 3).unwrap();
        assert_eq!(r.posted, vec![60]);
        assert_eq!(sums(&dir), pairs(&[("alice", 60)]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fold_interrupted_after_core_0_counts_nothing_twice() {
        let dir = temp_dir("crashfold");
        let mut r = recover(&dir, &["alice"], 2, 3).unwrap();
        r.files[0].store(PeerId(0), 100);
        r.files[1].store(PeerId(0), 23);
        drop(r);
        // A fold that renamed core 0's new file and then died: core-1 is still of the old epoch.
        let (epoch, current, _) = current_set(&dir).unwrap();
        let names = vec!["alice".to_owned()];
        let header = Header {
            epoch: epoch + 1,
            core: 0,
            cores: 2,
            header_len: header_len_for(&names),
            names,
        };
        assert_eq!(sum_by_name(&current), pairs(&[("alice", 123)]));
        write_new_file(&core_file(&dir, 0), &header, &[123]).unwrap();
        fs::write(dir.join("core-1.ledger.tmp"), b"half written").unwrap();
        assert_eq!(sums(&dir), pairs(&[("alice", 123)]));
        let r = recover(&dir, &["alice"], 2, 3).unwrap();
        assert_eq!(r.posted, vec![123]);
        assert!(
            !dir.join("core-1.ledger.tmp").exists(),
            "replaced by the new set"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn refused(dir: &Path, damage: impl FnOnce(&mut Vec<u8>), expect: &str) {
        let path = core_file(dir, 0);
        let mut bytes = fs::read(&path).unwrap();
        let original = bytes.clone();
        damage(&mut bytes);
        fs::write(&path, &bytes).unwrap();
        let error = recover(dir, &["alice"], 1, 3).unwrap_err().to_string();
        assert!(error.contains("core-0.ledger"), "{error}");
        assert!(error.contains(expect), "{error}");
        assert!(error.contains("never reset"), "{error}");
        let error = balances(dir).unwrap_err().to_string();
        assert!(error.contains(expect), "{error}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "a refused file is left as it was"
        );
        fs::write(&path, original).unwrap();
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused() {
        let dir = temp_dir("corrupt");
        let mut r = recover(&dir, &["alice"], 1, 3).unwrap();
        r.files[0].store(PeerId(0), 42);
        drop(r);
        refused(&dir, |b| b[0] = b'X', "bad magic");
        refused(&dir, |b| b[8] = 9, "layout version 9");
        refused(&dir, |b| b[70] ^= 1, "header checksum mismatch");
        refused(&dir, |b| b.truncate(b.len() - 8), "truncated");
        refused(&dir, |b| b.truncate(10), "truncated");
        refused(&dir, Vec::clear, "empty file");
        refused(
            &dir,
            |b| {
                // Both slots, so whichever is committed is damaged.
                let at = b.len() - ROW_LEN;
                b[at + 8] ^= 0x10;
                b[at + 32] ^= 0x10;
            },
            "bad row checksum",
        );
        refused(
            &dir,
            |b| {
                *b = b"{\"peers\": []} not a ledger at all, but long enough to have a header"
                    .repeat(2)
            },
            "bad magic",
        );
        assert_eq!(recover(&dir, &["alice"], 1, 3).unwrap().posted, vec![42]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reader_never_sees_a_torn_value() {
        let words: Arc<Row> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        write_row(&words, 0);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (words, stop) = (Arc::clone(&words), Arc::clone(&stop));
            std::thread::spawn(move || {
                // Both halves change on every write: a torn read mixes two k's.
                let mut k: i128 = 0;
                while !stop.load(Ordering::Relaxed) && k < 50_000_000 {
                    k += 1;
                    let value = k * ((1i128 << 64) + 1) * if k % 2 == 0 { 1 } else { -1 };
                    write_row(&words, value);
                }
            })
        };
        let mut seen = 0u64;
        for _ in 0..2_000_000 {
            let value = read_row(&words).expect("check word always matches");
            let magnitude = value.unsigned_abs();
            let k = magnitude >> 64;
            assert_eq!(magnitude, k * ((1u128 << 64) + 1), "torn read: {value:#x}");
            seen += u64::from(k > 0);
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(seen > 0, "the reader saw the writer's values");
    }

    #[test]
    fn balances_json_shape() {
        let json = balances_json(&pairs(&[("alice", 12), ("bob", -(1i128 << 70))]));
        assert_eq!(
            json.to_string(),
            r#"{"peers":[{"name":"alice","posted":"12"},{"name":"bob","posted":"-1180591620717411303424"}]}"#
        );
    }
}
