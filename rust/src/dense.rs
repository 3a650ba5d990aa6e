//! The dense (vector) index: usearch HNSW saved beside the database.
//!
//! SQLite is the source of truth. The index file carries a sidecar (`<file>.meta.json`) with the
//! database generation it reflects and the identity of the file it was written with; when the
//! sidecar is missing, stale or describes another file, or the file is corrupt, the index is
//! rebuilt from the embeddings stored in SQLite.
//!
//! Several processes may save the same index at once (the TUI and `mrrec` commands on one home):
//! each writes its own temporary files, and the sidecar's file identity tells a loader whether
//! the file beside it is the one it describes (two saves' renames can interleave).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{dense_err, Error, Result};
use crate::vector::dot;

/// Search quality knobs, tuned with `benchmarks/retrieval.py` (recall@10 >= 0.95 at 100k x 384-d).
#[derive(Debug, Clone, Copy)]
pub struct DenseParams {
    pub connectivity: usize,
    pub expansion_add: usize,
    pub expansion_search: usize,
    /// Below this many candidates a filtered search scans them exactly instead of walking the
    /// graph: exact is both faster and perfect for selective filters (one user's memory).
    pub exact_threshold: usize,
}

impl Default for DenseParams {
    fn default() -> Self {
        // expansion_search 40: recall@10 0.987 at 100k MiniLM vectors, p50 0.7 ms (searches ask
        // for at least 40 results, so a smaller breadth would not be used anyway).
        DenseParams { connectivity: 16, expansion_add: 128, expansion_search: 40, exact_threshold: 4096 }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Sidecar {
    format: u32,
    generation: i64,
    size: usize,
    dimensions: usize,
    /// The index file this sidecar was written with (see [`FileIdentity`]).
    file: FileIdentity,
}

/// 2: the sidecar names its file (format 1 sidecars read as stale: the index is rebuilt once).
const SIDECAR_FORMAT: u32 = 2;

/// What tells one saved index file from another: its length, modification time and (on Unix)
/// inode. Every save renames a new temporary file into place, so a file replaced by another
/// save differs in inode (both temporary files existed at once) or time.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct FileIdentity {
    len: u64,
    modified_ns: u64,
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> Option<Self> {
        let meta = fs::metadata(path).ok()?;
        let modified_ns = u64::try_from(meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileIdentity { len: meta.len(), modified_ns, inode })
    }
}

/// Temporary files older than this are left over from a killed save and deleted by the next save
/// (a save in progress never takes this long).
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A temporary path beside `path` that no other save uses, this process's or another's:
/// `<name>.<pid>-<n>.tmp`. Two processes saving the same file once shared one temporary file:
/// one's rename then failed ("No such file or directory") or moved the other's half-written file
/// into place.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Deletes the temporary files of saves of `path` that were killed (older than [`STALE_TEMP`]);
/// best effort.
pub(crate) fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else { return };
    let prefix = format!("{name}.");
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let ours = file.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp"));
        // `<pid>-<n>` only: not the sidecar's own temporaries of another file name.
        if !ours.is_some_and(|id| id.split_once('-').is_some_and(|(a, b)| is_number(a) && is_number(b))) {
            continue;
        }
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|m| now.duration_since(m).ok());
        if old.is_some_and(|age| age > STALE_TEMP) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub struct DenseIndex {
    index: Index,
    dims: usize,
    path: PathBuf,
    params: DenseParams,
}

/// How an index came to be when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenOutcome {
    Loaded,
    Rebuilt,
}

impl DenseIndex {
    fn empty(path: &Path, dims: usize, params: DenseParams) -> Result<Self> {
        let options = IndexOptions {
            dimensions: dims,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            expansion_search: params.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(dense_err)?;
        Ok(DenseIndex { index, dims, path: path.to_path_buf(), params })
    }

    fn sidecar_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".meta.json");
        PathBuf::from(p)
    }

    /// Loads the saved index when it matches `generation`, else rebuilds it with `fill`, which
    /// must call its argument once per (key, vector) stored in the database.
    pub fn open<F>(
        path: &Path,
        dims: usize,
        generation: i64,
        params: DenseParams,
        fill: F,
    ) -> Result<(Self, OpenOutcome)>
    where
        F: FnOnce(&mut dyn FnMut(u64, &[f32]) -> Result<()>) -> Result<()>,
    {
        if let Some(index) = Self::try_load(path, dims, generation, params) {
            return Ok((index, OpenOutcome::Loaded));
        }
        let index = Self::rebuild(path, dims, params, fill)?;
        Ok((index, OpenOutcome::Rebuilt))
    }

    fn try_load(path: &Path, dims: usize, generation: i64, params: DenseParams) -> Option<Self> {
        let sidecar: Sidecar = serde_json::from_slice(&fs::read(Self::sidecar_path(path)).ok()?).ok()?;
        if sidecar.format != SIDECAR_FORMAT || sidecar.generation != generation || sidecar.dimensions != dims {
            return None;
        }
        // The file must be the one the sidecar was written with, before and after loading it:
        // another process's save may have replaced it since (or may while it loads).
        if FileIdentity::of(path) != Some(sidecar.file) {
            return None;
        }
        let this = Self::empty(path, dims, params).ok()?;
        let path_str = path.to_str()?;
        this.index.load(path_str).ok()?;
        if FileIdentity::of(path) != Some(sidecar.file) {
            return None;
        }
        // A file that loads but disagrees with its sidecar was damaged or mixed up.
        if this.index.size() != sidecar.size || this.index.dimensions() != dims {
            return None;
        }
        this.index.change_expansion_search(params.expansion_search);
        Some(this)
    }

    /// Builds a fresh index from `fill` (vectors need not be normalised: the metric is cosine).
    pub fn rebuild<F>(path: &Path, dims: usize, params: DenseParams, fill: F) -> Result<Self>
    where
        F: FnOnce(&mut dyn FnMut(u64, &[f32]) -> Result<()>) -> Result<()>,
    {
        let this = Self::empty(path, dims, params)?;
        // Collect in chunks and add them on all cores: HNSW construction dominates rebuild time.
        const CHUNK: usize = 8192;
        let mut keys: Vec<u64> = Vec::with_capacity(CHUNK);
        let mut flat: Vec<f32> = Vec::with_capacity(CHUNK * dims);
        let flush = |keys: &mut Vec<u64>, flat: &mut Vec<f32>| -> Result<()> {
            this.add_batch(keys, flat)?;
            keys.clear();
            flat.clear();
            Ok(())
        };
        fill(&mut |key, vector| {
            if vector.len() != dims {
                return Err(Error::DenseIndex(format!(
                    "vector for key {key} has {} dimensions, expected {dims}",
                    vector.len()
                )));
            }
            keys.push(key);
            flat.extend_from_slice(vector);
            if keys.len() == CHUNK {
                flush(&mut keys, &mut flat)?;
            }
            Ok(())
        })?;
        flush(&mut keys, &mut flat)?;
        Ok(this)
    }

    /// Adds (or replaces) many vectors, in parallel across the machine's cores.
    pub fn add_batch(&self, keys: &[u64], flat: &[f32]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let needed = self.index.size() + keys.len();
        if needed > self.index.capacity() {
            self.index.reserve(needed.max(self.index.capacity() * 2)).map_err(dense_err)?;
        }
        for &key in keys {
            if self.index.contains(key) {
                self.index.remove(key).map_err(dense_err)?;
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = keys.len().div_ceil(threads);
        let dims = self.dims;
        std::thread::scope(|scope| {
            let handles: Vec<_> = keys
                .chunks(per_thread)
                .zip(flat.chunks(per_thread * dims))
                .map(|(ks, vs)| {
                    scope.spawn(move || -> Result<()> {
                        for (k, v) in ks.iter().zip(vs.chunks_exact(dims)) {
                            self.index.add(*k, v).map_err(dense_err)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().expect("index worker panicked"))
        })
    }

    pub fn add(&self, key: u64, vector: &[f32]) -> Result<()> {
        self.add_batch(&[key], vector)
    }

    pub fn remove(&self, key: u64) -> Result<()> {
        if self.index.contains(key) {
            self.index.remove(key).map_err(dense_err)?;
        }
        Ok(())
    }

    pub fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dimensions(&self) -> usize {
        self.dims
    }

    /// Approximate top-`k` by cosine similarity; `allow` filters keys during the graph walk.
    pub fn search(&self, query: &[f32], k: usize, allow: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<(u64, f32)>> {
        self.check_query(query)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let matches = match allow {
            None => self.index.search(query, k),
            Some(f) => self.index.filtered_search(query, k, f),
        }
        .map_err(dense_err)?;
        Ok(matches.keys.into_iter().zip(matches.distances).map(|(key, d)| (key, 1.0 - d)).collect())
    }

    /// Reads a key's vector into `buf`; false when the key has none.
    pub fn vector(&self, key: u64, buf: &mut [f32]) -> bool {
        matches!(self.index.get(key, buf), Ok(n) if n > 0)
    }

    /// Filtered searches over at most this many candidates scan them exactly.
    pub fn exact_threshold(&self) -> usize {
        self.params.exact_threshold
    }

    /// Filtered search that scans small candidate sets exactly and walks the graph otherwise.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        candidates: Option<&[u64]>,
        allow: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>> {
        self.check_query(query)?;
        match candidates {
            Some(c) if c.len() <= self.params.exact_threshold => {
                Ok(exact_top_k(query, c.iter().copied().filter(|&key| allow(key)), |key, buf| self.vector(key, buf), k))
            }
            _ => self.search(query, k, Some(allow)),
        }
    }

    fn check_query(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.dims {
            return Err(Error::InvalidArgument(format!(
                "query vector has {} dimensions, the index has {}",
                query.len(),
                self.dims
            )));
        }
        Ok(())
    }

    /// Writes the index and its sidecar atomically (temp file + rename, sidecar last), beside any
    /// other process saving the same index (each save has its own temporary files). A failed
    /// write leaves no temporary file, and a full or read-only disk is [`Error::Disk`].
    pub fn save(&self, generation: i64) -> Result<()> {
        let side = Self::sidecar_path(&self.path);
        remove_stale_temps(&self.path);
        remove_stale_temps(&side);
        let tmp = temp_path(&self.path);
        let side_tmp = temp_path(&side);
        let saved = (|| {
            let tmp_str = tmp.to_str().ok_or_else(|| Error::DenseIndex("non-UTF-8 path".into()))?;
            self.index.save(tmp_str).map_err(|e| Error::DenseIndex(format!("{}: {e}", tmp.display())))?;
            // Its identity before the rename (which keeps it): once renamed, another save may
            // already have replaced it, and the sidecar must not describe that file.
            let file =
                FileIdentity::of(&tmp).ok_or_else(|| Error::DenseIndex(format!("{}: vanished", tmp.display())))?;
            fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
            let sidecar =
                Sidecar { format: SIDECAR_FORMAT, generation, size: self.index.size(), dimensions: self.dims, file };
            fs::write(&side_tmp, serde_json::to_vec(&sidecar).expect("sidecar serialises"))
                .map_err(|e| Error::io(&side_tmp, e))?;
            fs::rename(&side_tmp, &side).map_err(|e| Error::io(&side, e))
        })();
        // Told apart while the partial file still takes its space (usearch does not say why).
        let saved = saved.map_err(|e| e.on_disk(&self.path));
        if saved.is_err() {
            // A new index without its sidecar reads as stale and is rebuilt: never wrong.
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&side_tmp);
        }
        saved
    }
}

/// Exact cosine top-`k` over `keys`, reading each vector through `lookup` (keys without a
/// vector are skipped).
pub fn exact_top_k(
    query: &[f32],
    keys: impl Iterator<Item = u64>,
    lookup: impl Fn(u64, &mut [f32]) -> bool,
    k: usize,
) -> Vec<(u64, f32)> {
    let qnorm = dot(query, query).sqrt().max(f32::MIN_POSITIVE);
    let mut buf = vec![0f32; query.len()];
    let mut scored: Vec<(u64, f32)> = Vec::new();
    for key in keys {
        if !lookup(key, &mut buf) {
            continue;
        }
        let norm = dot(&buf, &buf).sqrt().max(f32::MIN_POSITIVE);
        scored.push((key, dot(query, &buf) / (qnorm * norm)));
    }
    top_k(&mut scored, k);
    scored
}

/// Keeps the `k` highest-scoring entries, best first (ties broken by key for determinism).
pub fn top_k(scored: &mut Vec<(u64, f32)>, k: usize) {
    top_k_by(scored, k, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// [`top_k`] for f64 scores.
pub fn top_k_f64(scored: &mut Vec<(u64, f64)>, k: usize) {
    top_k_by(scored, k, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

fn top_k_by<T>(scored: &mut Vec<T>, k: usize, cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Copy) {
    if scored.len() > k {
        scored.select_nth_unstable_by(k, cmp);
        scored.truncate(k);
    }
    scored.sort_by(cmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        // xorshift: deterministic pseudo-random vectors without a rand dependency
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..dims)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn build(dir: &Path, n: u64) -> DenseIndex {
        DenseIndex::rebuild(&dir.join("t.usearch"), 16, DenseParams::default(), |add| {
            (0..n).try_for_each(|k| add(k, &unit(k, 16)))
        })
        .unwrap()
    }

    #[test]
    fn finds_itself_and_respects_filter() {
        let dir = tempfile::tempdir().unwrap();
        let index = build(dir.path(), 500);
        let hits = index.search(&unit(42, 16), 3, None).unwrap();
        assert_eq!(hits[0].0, 42);
        assert!((hits[0].1 - 1.0).abs() < 1e-4);
        let even = |k: u64| k % 2 == 0;
        let hits = index.search(&unit(43, 16), 5, Some(&even)).unwrap();
        assert!(!hits.is_empty() && hits.iter().all(|(k, _)| k % 2 == 0));
        let exact = index.search_filtered(&unit(43, 16), 5, Some(&[1, 2, 43, 44]), &even).unwrap();
        assert_eq!(exact.iter().map(|h| h.0).collect::<Vec<_>>().len(), 2);
    }

    #[test]
    fn save_load_and_stale_or_corrupt_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.usearch");
        build(dir.path(), 100).save(7).unwrap();
        let fill = |add: &mut dyn FnMut(u64, &[f32]) -> Result<()>| (0..100).try_for_each(|k| add(k, &unit(k, 16)));
        let (_, outcome) = DenseIndex::open(&path, 16, 7, DenseParams::default(), fill).unwrap();
        assert_eq!(outcome, OpenOutcome::Loaded);
        let (_, outcome) = DenseIndex::open(&path, 16, 8, DenseParams::default(), fill).unwrap();
        assert_eq!(outcome, OpenOutcome::Rebuilt);
        fs::write(&path, b"garbage").unwrap();
        let (index, outcome) = DenseIndex::open(&path, 16, 7, DenseParams::default(), fill).unwrap();
        assert_eq!(outcome, OpenOutcome::Rebuilt);
        assert_eq!(index.len(), 100);
        fs::remove_file(&path).unwrap();
        let (_, outcome) = DenseIndex::open(&path, 16, 7, DenseParams::default(), fill).unwrap();
        assert_eq!(outcome, OpenOutcome::Rebuilt);
    }

    #[test]
    fn a_sidecar_never_vouches_for_another_saves_file() {
        // Two processes saving at once can interleave their renames: one's index file, the
        // other's sidecar. The sidecar described a file of the same size and generation, so the
        // other process's index loaded as this one (missing or holding the wrong vectors).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.usearch");
        build(dir.path(), 100).save(7).unwrap();
        let other = tempfile::tempdir().unwrap();
        let shifted = DenseIndex::rebuild(&other.path().join("t.usearch"), 16, DenseParams::default(), |add| {
            (0..100).try_for_each(|k| add(k, &unit(k + 1000, 16)))
        })
        .unwrap();
        shifted.save(7).unwrap();
        fs::rename(other.path().join("t.usearch"), &path).unwrap();
        let fill = |add: &mut dyn FnMut(u64, &[f32]) -> Result<()>| (0..100).try_for_each(|k| add(k, &unit(k, 16)));
        let (index, outcome) = DenseIndex::open(&path, 16, 7, DenseParams::default(), fill).unwrap();
        assert_eq!(outcome, OpenOutcome::Rebuilt);
        assert_eq!(index.search(&unit(42, 16), 1, None).unwrap()[0].0, 42);
    }

    #[test]
    fn concurrent_saves_of_one_index_all_succeed() {
        // They once shared one temporary file: a save's rename failed with "No such file or
        // directory" when another had just renamed it away.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.usearch");
        let index = build(dir.path(), 200);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..40).for_each(|_| index.save(3).unwrap()));
            }
        });
        // Interleaved saves may leave the sidecar of one beside the index file of another: that
        // pair reads as stale and is rebuilt (never wrong). The next save settles it.
        index.save(3).unwrap();
        let fill = |_: &mut dyn FnMut(u64, &[f32]) -> Result<()>| -> Result<()> { panic!("must load") };
        let (loaded, outcome) = DenseIndex::open(&path, 16, 3, DenseParams::default(), fill).unwrap();
        assert_eq!((outcome, loaded.len()), (OpenOutcome::Loaded, 200));
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "only the index and its sidecar remain: {left:?}");
    }

    #[test]
    fn a_killed_saves_old_temporary_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.usearch");
        let stale = dir.path().join("t.usearch.999-0.tmp");
        let fresh = dir.path().join("t.usearch.999-1.tmp");
        for p in [&stale, &fresh] {
            fs::write(p, b"half a save").unwrap();
        }
        let old = SystemTime::now() - STALE_TEMP - Duration::from_secs(60);
        fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        build(dir.path(), 10).save(1).unwrap();
        assert!(!stale.exists(), "left over from a killed save");
        assert!(fresh.exists(), "may be another process's save in progress");
        assert!(path.exists());
    }

    #[test]
    fn top_k_orders_and_truncates() {
        let mut v = vec![(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.9)];
        top_k(&mut v, 3);
        assert_eq!(v, vec![(2, 0.9), (4, 0.9), (3, 0.5)]);
    }
}
