//! The Python bindings (`mrrec_edge._core`): a thin layer over the core. Inputs are copied out of
//! Python objects, then the GIL is released around every call that touches SQLite or an index.

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::{AllowTypeChange, PyArray1, PyArrayLike1, PyArrayLike2};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::collab::Similarity;
use crate::error::Error;
use crate::grounding::{Weights, SATURATION, SIGNALS};
use crate::import::{ImportKind, ImportOptions, ImportReport};
use crate::metrics;
use crate::model::{Item, ItemHit, MemoryEntry, MemoryFilter, MemoryHit, NewMemory, SearchMode, Stats, Tier};
use crate::orchestrator::request::{self, FollowUp, Prior};
use crate::orchestrator::{estimate_tokens, protocol, Action, Orchestrator, OrchestratorConfig, ShownMemory};
use crate::store::{
    CollabReport, Draft, EmbeddingTarget, GroundRequest, GroundedItem, IndexReport, MemoryStore, StoreOptions,
};

/// Raises the `mrrec_edge.errors` class that matches a core error.
fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let errors = py.import("mrrec_edge.errors")?;
        let message = err.to_string();
        let kwargs = PyDict::new(py);
        let class = match &err {
            Error::Input { location, .. } => {
                kwargs.set_item("path", location.file.display().to_string())?;
                kwargs.set_item("line", location.line)?;
                kwargs.set_item("field", location.field.clone())?;
                "InputError"
            }
            Error::Io { path, .. } => {
                kwargs.set_item("path", path.display().to_string())?;
                "InputError"
            }
            Error::InvalidArgument(_) => "InputError",
            Error::NotFound(_) => "NotFoundError",
            Error::Locked(_) => "StoreLockedError",
            Error::Sqlite(_) | Error::Schema { .. } => "StoreError",
            Error::Disk { full, .. } => {
                kwargs.set_item("full", *full)?;
                "DiskError"
            }
            Error::DenseIndex(_) => "DenseIndexError",
            Error::Callback(_) | Error::Cancelled => "MrrecError",
        };
        // DiskError words its message itself, from the path: one wording for both languages.
        let first = match &err {
            Error::Disk { path, .. } => path.display().to_string(),
            _ => message,
        };
        let instance = errors.getattr(class)?.call((first,), Some(&kwargs))?;
        Ok(PyErr::from_value(instance))
    };
    build().unwrap_or_else(|e| e)
}

trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for crate::error::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, e))
    }
}

fn parse_tiers(tiers: Option<Vec<String>>) -> crate::error::Result<Vec<Tier>> {
    tiers.unwrap_or_default().iter().map(|t| Tier::parse(t)).collect()
}

#[pyclass(frozen, get_all, name = "MemoryEntry", module = "mrrec_edge._core")]
#[derive(Clone)]
pub struct PyMemoryEntry {
    id: i64,
    tier: String,
    user: Option<String>,
    categories: Vec<String>,
    text: String,
    source_ids: Vec<i64>,
    item: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<MemoryEntry> for PyMemoryEntry {
    fn from(e: MemoryEntry) -> Self {
        PyMemoryEntry {
            id: e.id,
            tier: e.tier.name().into(),
            user: e.user,
            categories: e.categories,
            text: e.text,
            source_ids: e.source_ids,
            item: e.item,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[pymethods]
impl PyMemoryEntry {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", self.id)?;
        d.set_item("tier", &self.tier)?;
        d.set_item("user", &self.user)?;
        d.set_item("categories", &self.categories)?;
        d.set_item("text", &self.text)?;
        d.set_item("source_ids", &self.source_ids)?;
        d.set_item("item", &self.item)?;
        d.set_item("created_at", self.created_at)?;
        d.set_item("updated_at", self.updated_at)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("MemoryEntry(id={}, tier={:?}, user={:?}, text={:?})", self.id, self.tier, self.user, self.text)
    }
}

#[pyclass(frozen, get_all, name = "MemoryHit", module = "mrrec_edge._core")]
pub struct PyMemoryHit {
    entry: Py<PyMemoryEntry>,
    score: f64,
    dense_score: Option<f32>,
    lexical_score: Option<f64>,
}

impl PyMemoryHit {
    fn new(py: Python<'_>, h: MemoryHit) -> PyResult<Self> {
        Ok(PyMemoryHit {
            entry: Py::new(py, PyMemoryEntry::from(h.entry))?,
            score: h.score,
            dense_score: h.dense_score,
            lexical_score: h.lexical_score,
        })
    }
}

#[pymethods]
impl PyMemoryHit {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.entry.get().to_dict(py)?;
        d.set_item("score", self.score)?;
        d.set_item("dense_score", self.dense_score)?;
        d.set_item("lexical_score", self.lexical_score)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("MemoryHit(score={:.4}, {})", self.score, self.entry.get().__repr__())
    }
}

#[pyclass(frozen, get_all, name = "ItemHit", module = "mrrec_edge._core")]
pub struct PyItemHit {
    item_id: i64,
    ext_id: String,
    title: String,
    year: Option<i32>,
    categories: Vec<String>,
    score: f32,
}

impl From<ItemHit> for PyItemHit {
    fn from(h: ItemHit) -> Self {
        PyItemHit {
            item_id: h.item_id,
            ext_id: h.ext_id,
            title: h.title,
            year: h.year,
            categories: h.categories,
            score: h.score,
        }
    }
}

#[pymethods]
impl PyItemHit {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("item_id", self.item_id)?;
        d.set_item("ext_id", &self.ext_id)?;
        d.set_item("title", &self.title)?;
        d.set_item("year", self.year)?;
        d.set_item("categories", &self.categories)?;
        d.set_item("score", self.score)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("ItemHit({:?}, {:?}, score={:.4})", self.ext_id, self.title, self.score)
    }
}

#[pyclass(frozen, get_all, name = "Item", module = "mrrec_edge._core")]
pub struct PyItem {
    item_id: i64,
    ext_id: String,
    title: String,
    year: Option<i32>,
    categories: Vec<String>,
    keywords: Vec<String>,
    description: Option<String>,
    text: String,
}

impl From<Item> for PyItem {
    fn from(i: Item) -> Self {
        PyItem {
            item_id: i.item_id,
            ext_id: i.ext_id,
            title: i.title,
            year: i.year,
            categories: i.categories,
            keywords: i.keywords,
            description: i.description,
            text: i.text,
        }
    }
}

#[pymethods]
impl PyItem {
    fn __repr__(&self) -> String {
        format!("Item({:?}, {:?}, year={:?})", self.ext_id, self.title, self.year)
    }
}

fn report_dict<'py>(py: Python<'py>, r: &ImportReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", &r.kind)?;
    d.set_item("files", r.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>())?;
    d.set_item("rows", r.rows)?;
    d.set_item("items_added", r.items_added)?;
    d.set_item("items_matched", r.items_matched)?;
    d.set_item("users_added", r.users_added)?;
    d.set_item("records_added", r.records_added)?;
    d.set_item("records_skipped", r.records_skipped)?;
    d.set_item("memory_added", r.memory_added)?;
    d.set_item("keywords_matched", r.keywords_matched)?;
    Ok(d)
}

fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("users", s.users)?;
    d.set_item("items", s.items)?;
    d.set_item("interactions", s.interactions)?;
    let tiers = PyDict::new(py);
    for t in Tier::ALL {
        tiers.set_item(t.name(), s.memory_by_tier[t as usize])?;
    }
    d.set_item("memory", tiers)?;
    let pending = PyDict::new(py);
    pending.set_item("items", s.pending_item_embeddings)?;
    pending.set_item("memory", s.pending_memory_embeddings)?;
    d.set_item("pending_embeddings", pending)?;
    d.set_item("conversations", s.conversations)?;
    Ok(d)
}

fn index_dict<'py>(py: Python<'py>, r: &IndexReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("memory_vectors", r.memory_vectors)?;
    d.set_item("catalog_vectors", r.catalog_vectors)?;
    d.set_item("memory_rebuilt", r.memory_rebuilt)?;
    d.set_item("catalog_rebuilt", r.catalog_rebuilt)?;
    Ok(d)
}

fn vector_arg(v: Option<PyArrayLike1<'_, f32, AllowTypeChange>>) -> Option<Vec<f32>> {
    v.map(|a| a.as_array().iter().copied().collect())
}

/// A fused-grounding item: the hit, each signal's weighted contribution, what the
/// conversation's constraints added (a preferred category) or took off (closeness to what the
/// user ruled out), and the history items or seeds that most support it.
#[pyclass(frozen, get_all, name = "GroundedItem", module = "mrrec_edge._core")]
pub struct PyGroundedItem {
    item: Py<PyItemHit>,
    contributions: Vec<(String, f32)>,
    adjustment: f32,
    because: Vec<i64>,
}

impl PyGroundedItem {
    fn new(py: Python<'_>, g: GroundedItem) -> PyResult<Self> {
        Ok(PyGroundedItem {
            item: Py::new(py, PyItemHit::from(g.hit))?,
            contributions: SIGNALS.iter().map(|s| s.to_string()).zip(g.contributions).collect(),
            adjustment: g.adjustment,
            because: g.because,
        })
    }
}

fn weights_arg(weights: &std::collections::HashMap<String, f32>) -> crate::error::Result<Weights> {
    let mut pairs: Vec<(&str, f32)> = weights.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    Weights::from_pairs(pairs)
}

/// What a grounding request knows (every part optional): built once, then ranked with any
/// weights (`MemoryStore.ground_fused`) or read as signals (`MemoryStore.grounding_signals`).
#[pyclass(frozen, name = "GroundRequest", module = "mrrec_edge._core")]
pub struct PyGroundRequest {
    inner: GroundRequest,
}

#[pymethods]
impl PyGroundRequest {
    #[new]
    #[pyo3(signature = (*, profile = None, request = None, profile_text = None, user = None, cited_memory = None,
                        include_seen = false, exclude = None, categories = None, similarity = None, avoid = None,
                        avoid_categories = None, prefer_categories = None, seeds = None, negative_seeds = None,
                        min_year = None, max_year = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        profile: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
        request: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
        profile_text: Option<String>,
        user: Option<String>,
        cited_memory: Option<Vec<i64>>,
        include_seen: bool,
        exclude: Option<Vec<i64>>,
        categories: Option<Vec<String>>,
        similarity: Option<&str>,
        avoid: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
        avoid_categories: Option<Vec<String>>,
        prefer_categories: Option<Vec<String>>,
        seeds: Option<Vec<i64>>,
        negative_seeds: Option<Vec<i64>>,
        min_year: Option<i32>,
        max_year: Option<i32>,
    ) -> PyResult<Self> {
        let similarity = similarity.map(Similarity::parse).transpose().py_err(py)?;
        Ok(PyGroundRequest {
            inner: GroundRequest {
                profile: vector_arg(profile),
                request: vector_arg(request),
                profile_text,
                user,
                cited_memory: cited_memory.unwrap_or_default(),
                include_seen,
                exclude: exclude.unwrap_or_default(),
                categories: categories.unwrap_or_default(),
                similarity,
                avoid: vector_arg(avoid),
                avoid_categories: avoid_categories.unwrap_or_default(),
                prefer_categories: prefer_categories.unwrap_or_default(),
                seeds: seeds.unwrap_or_default(),
                negative_seeds: negative_seeds.unwrap_or_default(),
                min_year,
                max_year,
            },
        })
    }
}

fn collab_dict<'py>(py: Python<'py>, r: &CollabReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("items", r.items)?;
    d.set_item("interactions", r.interactions)?;
    d.set_item("ease", r.ease)?;
    d.set_item("seconds", r.seconds)?;
    Ok(d)
}

#[pyclass(frozen, name = "MemoryStore", module = "mrrec_edge._core")]
pub struct PyMemoryStore {
    inner: MemoryStore,
}

#[pymethods]
impl PyMemoryStore {
    #[new]
    /// Omitted options take the core's defaults (`StoreOptions::default`).
    #[pyo3(signature = (home, *, dimensions = None, exact_threshold = None, expansion_search = None, busy_timeout_ms = None))]
    fn new(
        py: Python<'_>,
        home: PathBuf,
        dimensions: Option<usize>,
        exact_threshold: Option<usize>,
        expansion_search: Option<usize>,
        busy_timeout_ms: Option<u64>,
    ) -> PyResult<Self> {
        let mut opts = StoreOptions::default();
        opts.dimensions = dimensions.unwrap_or(opts.dimensions);
        opts.busy_timeout_ms = busy_timeout_ms.unwrap_or(opts.busy_timeout_ms);
        opts.dense.exact_threshold = exact_threshold.unwrap_or(opts.dense.exact_threshold);
        opts.dense.expansion_search = expansion_search.unwrap_or(opts.dense.expansion_search);
        let inner = py.detach(|| MemoryStore::open(&home, opts)).py_err(py)?;
        Ok(PyMemoryStore { inner })
    }

    #[getter]
    fn home(&self) -> PathBuf {
        self.inner.home().to_path_buf()
    }

    #[getter]
    fn db_path(&self) -> PathBuf {
        self.inner.db_path()
    }

    fn dimensions(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.inner.dimensions()).py_err(py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.stats()).py_err(py)?;
        stats_dict(py, &s)
    }

    fn users(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.users()).py_err(py)
    }

    fn category_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.category_names()).py_err(py)
    }

    /// Imports a file or export folder in one transaction. `progress(done, total)` is called
    /// now and then; an exception it raises (KeyboardInterrupt included) rolls the import back.
    #[pyo3(signature = (kind, path, *, user = None, keywords = None, progress = None))]
    fn import_file<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        path: PathBuf,
        user: Option<String>,
        keywords: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let kind = ImportKind::parse(kind).py_err(py)?;
        let opts = ImportOptions { user, keywords };
        let raised: Mutex<Option<PyErr>> = Mutex::new(None);
        let result = py.detach(|| {
            let mut callback = |done: u64, total: u64| -> crate::error::Result<()> {
                Python::attach(|py| {
                    let outcome = py.check_signals().and_then(|_| match &progress {
                        Some(cb) => cb.call1(py, (done, total)).map(|_| ()),
                        None => Ok(()),
                    });
                    outcome.map_err(|e| {
                        *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        Error::Cancelled
                    })
                })
            };
            self.inner.import(kind, &path, &opts, &mut callback)
        });
        if let Some(e) = raised.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let report = result.py_err(py)?;
        report_dict(py, &report)
    }

    /// Up to `limit` texts waiting for a vector, as (target, id, text); target is "item" or "memory".
    fn pending_embeddings(&self, py: Python<'_>, limit: usize) -> PyResult<Vec<(String, i64, String)>> {
        let rows = py.detach(|| self.inner.pending_embeddings(limit)).py_err(py)?;
        Ok(rows.into_iter().map(|(t, id, text)| (t.name().to_string(), id, text)).collect())
    }

    fn set_embeddings(
        &self,
        py: Python<'_>,
        target: &str,
        ids: Vec<i64>,
        vectors: PyArrayLike2<'_, f32, AllowTypeChange>,
    ) -> PyResult<usize> {
        let target = EmbeddingTarget::parse(target).py_err(py)?;
        let rows: Vec<Vec<f32>> = vectors.as_array().rows().into_iter().map(|r| r.to_vec()).collect();
        py.detach(|| self.inner.set_embeddings(target, &ids, &rows)).py_err(py)
    }

    #[pyo3(signature = (*, vector = None, text = None, k = 10, user = None, tiers = None, categories = None, exclude = None, mode = "hybrid"))]
    #[allow(clippy::too_many_arguments)]
    fn search_memory(
        &self,
        py: Python<'_>,
        vector: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
        text: Option<String>,
        k: usize,
        user: Option<String>,
        tiers: Option<Vec<String>>,
        categories: Option<Vec<String>>,
        exclude: Option<Vec<i64>>,
        mode: &str,
    ) -> PyResult<Vec<PyMemoryHit>> {
        let mode = SearchMode::parse(mode).py_err(py)?;
        let filter = MemoryFilter {
            user,
            tiers: parse_tiers(tiers).py_err(py)?,
            categories: categories.unwrap_or_default(),
            exclude: exclude.unwrap_or_default(),
        };
        let vector = vector_arg(vector);
        let hits =
            py.detach(|| self.inner.search_memory(vector.as_deref(), text.as_deref(), k, &filter, mode)).py_err(py)?;
        hits.into_iter().map(|h| PyMemoryHit::new(py, h)).collect()
    }

    #[pyo3(signature = (vector, *, k = 10, user = None, include_seen = false, categories = None, exclude = None))]
    #[allow(clippy::too_many_arguments)]
    fn ground(
        &self,
        py: Python<'_>,
        vector: PyArrayLike1<'_, f32, AllowTypeChange>,
        k: usize,
        user: Option<String>,
        include_seen: bool,
        categories: Option<Vec<String>>,
        exclude: Option<Vec<i64>>,
    ) -> PyResult<Vec<PyItemHit>> {
        let vector: Vec<f32> = vector.as_array().iter().copied().collect();
        let categories = categories.unwrap_or_default();
        let exclude = exclude.unwrap_or_default();
        let hits = py
            .detach(|| self.inner.ground(&vector, k, user.as_deref(), include_seen, &categories, &exclude))
            .py_err(py)?;
        Ok(hits.into_iter().map(PyItemHit::from).collect())
    }

    /// The `k` best catalog items for `request` by the fused grounding signals (see
    /// `GROUNDING_SIGNALS`), each z-scored over the candidates (soft-clipped at
    /// ±`GROUNDING_SATURATION`) and weighted by `weights`.
    #[pyo3(signature = (request, *, weights, k = 10))]
    fn ground_fused(
        &self,
        py: Python<'_>,
        request: &PyGroundRequest,
        weights: std::collections::HashMap<String, f32>,
        k: usize,
    ) -> PyResult<Vec<PyGroundedItem>> {
        let weights = weights_arg(&weights).py_err(py)?;
        let items = py.detach(|| self.inner.ground_fused(&request.inner, &weights, k)).py_err(py)?;
        items.into_iter().map(|g| PyGroundedItem::new(py, g)).collect()
    }

    /// `request`'s normalised signals over its candidates, for fitting the weights: `(item_ids,
    /// signals, seeds)`, `signals[s]` in `GROUNDING_SIGNALS` order, the seeds those the profile
    /// named or the citations gave.
    #[allow(clippy::type_complexity)]
    fn grounding_signals<'py>(
        &self,
        py: Python<'py>,
        request: &PyGroundRequest,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Vec<Bound<'py, PyArray1<f32>>>, Vec<i64>)> {
        let (signals, seeds) = py.detach(|| self.inner.grounding_signals(&request.inner)).py_err(py)?;
        let values = signals.values.into_iter().map(|v| PyArray1::from_vec(py, v)).collect();
        Ok((PyArray1::from_vec(py, signals.items), values, seeds))
    }

    /// Loads the collaborative index ahead of the first grounding (the saved one, or rebuilt
    /// when stale); what a rebuild did, or None.
    fn open_collab<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let r = py.detach(|| self.inner.open_collab()).py_err(py)?;
        r.map(|r| collab_dict(py, &r)).transpose()
    }

    /// Rebuilds the collaborative index (item-kNN, EASE) from the interactions now.
    fn rebuild_collab<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = py.detach(|| self.inner.rebuild_collab()).py_err(py)?;
        collab_dict(py, &r)
    }

    /// Catalog items matching `text` lexically (title, genres, keywords, description).
    #[pyo3(signature = (text, *, k = 10, categories = None))]
    fn search_items(
        &self,
        py: Python<'_>,
        text: String,
        k: usize,
        categories: Option<Vec<String>>,
    ) -> PyResult<Vec<PyItemHit>> {
        let categories = categories.unwrap_or_default();
        let hits = py.detach(|| self.inner.search_items(&text, k, &categories)).py_err(py)?;
        Ok(hits.into_iter().map(PyItemHit::from).collect())
    }

    #[pyo3(signature = (tier, text, *, user = None, categories = None, source_ids = None, vector = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_memory(
        &self,
        py: Python<'_>,
        tier: &str,
        text: String,
        user: Option<String>,
        categories: Option<Vec<String>>,
        source_ids: Option<Vec<i64>>,
        vector: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
    ) -> PyResult<i64> {
        let entry = NewMemory {
            tier: Some(Tier::parse(tier).py_err(py)?),
            user,
            categories: categories.unwrap_or_default(),
            text,
            source_ids: source_ids.unwrap_or_default(),
            vector: vector_arg(vector),
        };
        py.detach(|| self.inner.add_memory(&entry)).py_err(py)
    }

    /// The user's behavior records with their items' facts, oldest first.
    fn user_history<'py>(&self, py: Python<'py>, user: &str) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let records = py.detach(|| self.inner.user_history(user)).py_err(py)?;
        records
            .into_iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("record_id", r.record_id)?;
                d.set_item("item_id", r.item_id)?;
                d.set_item("item", r.item)?;
                d.set_item("title", r.title)?;
                d.set_item("year", r.year)?;
                d.set_item("categories", r.categories)?;
                d.set_item("keywords", r.keywords)?;
                d.set_item("rating", r.rating)?;
                d.set_item("timestamp", r.timestamp)?;
                d.set_item("text", r.text)?;
                d.set_item("source", r.source)?;
                Ok(d)
            })
            .collect()
    }

    /// Replaces the user's (or global) entries of a derived tier, optionally one category's, by
    /// `drafts` ({"text", "categories", "source_ids", "vector"?}) in one transaction.
    #[pyo3(signature = (tier, drafts, *, user = None, category = None))]
    fn replace_memory(
        &self,
        py: Python<'_>,
        tier: &str,
        drafts: &Bound<'_, PyList>,
        user: Option<String>,
        category: Option<String>,
    ) -> PyResult<Vec<i64>> {
        let tier = Tier::parse(tier).py_err(py)?;
        let drafts = drafts
            .iter()
            .map(|d| -> PyResult<Draft> {
                let d = d.cast::<PyDict>()?;
                let get = |k: &str| d.get_item(k);
                Ok(Draft {
                    text: get("text")?.ok_or_else(|| PyRuntimeError::new_err("draft needs text"))?.extract()?,
                    categories: get("categories")?.map(|v| v.extract()).transpose()?.unwrap_or_default(),
                    source_ids: get("source_ids")?.map(|v| v.extract()).transpose()?.unwrap_or_default(),
                    vector: match get("vector")? {
                        Some(v) if !v.is_none() => {
                            Some(v.extract::<PyArrayLike1<'_, f32, AllowTypeChange>>()?.as_array().to_vec())
                        }
                        _ => None,
                    },
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| self.inner.replace_memory(user.as_deref(), tier, category.as_deref(), &drafts)).py_err(py)
    }

    /// Records feedback on an item as a behavior record (and its memory entry).
    #[pyo3(signature = (user, item, *, rating = None, text = None, source = "feedback", timestamp = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_feedback<'py>(
        &self,
        py: Python<'py>,
        user: &str,
        item: &str,
        rating: Option<f64>,
        text: Option<String>,
        source: &str,
        timestamp: Option<i64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ts = timestamp.unwrap_or_else(crate::store::now);
        let out = py.detach(|| self.inner.add_feedback(user, item, rating, text.as_deref(), source, ts)).py_err(py)?;
        let d = PyDict::new(py);
        d.set_item("record_id", out.record_id)?;
        d.set_item("memory_id", out.memory_id)?;
        d.set_item("item_id", out.item_id)?;
        d.set_item("categories", out.categories)?;
        Ok(d)
    }

    fn get_memory(&self, py: Python<'_>, id: i64) -> PyResult<PyMemoryEntry> {
        py.detach(|| self.inner.get_memory(id)).py_err(py).map(PyMemoryEntry::from)
    }

    fn forget_memory(&self, py: Python<'_>, ids: Vec<i64>) -> PyResult<usize> {
        py.detach(|| self.inner.forget_memory(&ids)).py_err(py)
    }

    #[pyo3(signature = (*, user = None, tiers = None, limit = 100))]
    fn list_memory(
        &self,
        py: Python<'_>,
        user: Option<String>,
        tiers: Option<Vec<String>>,
        limit: usize,
    ) -> PyResult<Vec<PyMemoryEntry>> {
        let tiers = parse_tiers(tiers).py_err(py)?;
        let entries = py.detach(|| self.inner.list_memory(user.as_deref(), &tiers, limit)).py_err(py)?;
        Ok(entries.into_iter().map(PyMemoryEntry::from).collect())
    }

    /// Adds a user with no history yet; True if new.
    fn add_user(&self, py: Python<'_>, user: &str) -> PyResult<bool> {
        py.detach(|| self.inner.add_user(user)).py_err(py)
    }

    #[pyo3(signature = (user, title = ""))]
    fn create_conversation(&self, py: Python<'_>, user: &str, title: &str) -> PyResult<i64> {
        py.detach(|| self.inner.create_conversation(user, title)).py_err(py)
    }

    fn rename_conversation(&self, py: Python<'_>, id: i64, title: &str) -> PyResult<()> {
        py.detach(|| self.inner.rename_conversation(id, title)).py_err(py)
    }

    fn delete_conversation(&self, py: Python<'_>, id: i64) -> PyResult<bool> {
        py.detach(|| self.inner.delete_conversation(id)).py_err(py)
    }

    /// A user's conversations, most recently active first.
    #[pyo3(signature = (user, *, limit = 100))]
    fn list_conversations<'py>(&self, py: Python<'py>, user: &str, limit: usize) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let list = py.detach(|| self.inner.list_conversations(user, limit)).py_err(py)?;
        list.into_iter()
            .map(|c| {
                let d = PyDict::new(py);
                d.set_item("id", c.id)?;
                d.set_item("user", c.user)?;
                d.set_item("title", c.title)?;
                d.set_item("created_at", c.created_at)?;
                d.set_item("updated_at", c.updated_at)?;
                d.set_item("messages", c.messages)?;
                Ok(d)
            })
            .collect()
    }

    /// Appends a message (`payload`: a JSON string) and returns its id.
    #[pyo3(signature = (conversation_id, role, content, payload = "{}"))]
    fn add_message(
        &self,
        py: Python<'_>,
        conversation_id: i64,
        role: &str,
        content: &str,
        payload: &str,
    ) -> PyResult<i64> {
        py.detach(|| self.inner.add_message(conversation_id, role, content, payload)).py_err(py)
    }

    /// Rewrites a streaming message's content (and payload when given).
    #[pyo3(signature = (id, content, payload = None))]
    fn update_message(&self, py: Python<'_>, id: i64, content: &str, payload: Option<&str>) -> PyResult<()> {
        py.detach(|| self.inner.update_message(id, content, payload)).py_err(py)
    }

    fn conversation_messages<'py>(&self, py: Python<'py>, conversation_id: i64) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let msgs = py.detach(|| self.inner.conversation_messages(conversation_id)).py_err(py)?;
        msgs.into_iter()
            .map(|m| {
                let d = PyDict::new(py);
                d.set_item("id", m.id)?;
                d.set_item("conversation_id", m.conversation_id)?;
                d.set_item("role", m.role)?;
                d.set_item("content", m.content)?;
                d.set_item("payload", m.payload)?;
                d.set_item("created_at", m.created_at)?;
                Ok(d)
            })
            .collect()
    }

    fn item(&self, py: Python<'_>, alias: &str) -> PyResult<PyItem> {
        py.detach(|| self.inner.item(alias)).py_err(py).map(PyItem::from)
    }

    fn items_by_id(&self, py: Python<'_>, ids: Vec<i64>) -> PyResult<Vec<PyItem>> {
        let items = py.detach(|| self.inner.items_by_id(&ids)).py_err(py)?;
        Ok(items.into_iter().map(PyItem::from).collect())
    }

    fn consumed_item_ids(&self, py: Python<'_>, user: &str) -> PyResult<Vec<i64>> {
        py.detach(|| self.inner.consumed_item_ids(user)).py_err(py)
    }

    fn open_indexes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = py.detach(|| self.inner.open_indexes()).py_err(py)?;
        index_dict(py, &r)
    }

    fn rebuild_indexes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = py.detach(|| self.inner.rebuild_indexes()).py_err(py)?;
        index_dict(py, &r)
    }

    /// Saves the dense indexes if they changed (they are always rebuildable from SQLite).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush()).py_err(py)
    }

    fn check_integrity(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.check_integrity()).py_err(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _a: Py<PyAny>, _b: Py<PyAny>, _c: Py<PyAny>) -> PyResult<bool> {
        self.flush(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("MemoryStore({:?})", self.inner.home())
    }
}

fn shown_from(entry: &PyMemoryEntry) -> PyResult<ShownMemory> {
    Ok(ShownMemory {
        id: entry.id,
        tier: Tier::parse(&entry.tier).map_err(|e| PyRuntimeError::new_err(e.to_string()))?,
        categories: entry.categories.clone(),
        text: entry.text.clone(),
    })
}

/// Memory entries or hits (whose entry is used) as the orchestrator shows them.
fn shown_list(items: &Bound<'_, PyList>) -> PyResult<Vec<ShownMemory>> {
    items
        .iter()
        .map(|item| {
            if let Ok(hit) = item.cast::<PyMemoryHit>() {
                shown_from(hit.get().entry.get())
            } else {
                shown_from(item.cast::<PyMemoryEntry>()?.get())
            }
        })
        .collect()
}

fn action_dict<'py>(py: Python<'py>, action: &Action) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match action {
        Action::Retrieve { aspects, tier, category, k } => {
            d.set_item("kind", "retrieve")?;
            d.set_item("aspects", aspects)?;
            d.set_item("tier", tier.map(Tier::name))?;
            d.set_item("category", category)?;
            d.set_item("k", k)?;
        }
        Action::Answer { profile, memory_ids, fallback, reason } => {
            d.set_item("kind", "answer")?;
            d.set_item("profile", profile)?;
            d.set_item("memory_ids", memory_ids)?;
            d.set_item("fallback", fallback)?;
            d.set_item("reason", reason)?;
        }
    }
    Ok(d)
}

/// The reasoning-retrieval state machine (see `rust/src/orchestrator`).
#[pyclass(name = "Orchestrator", module = "mrrec_edge._core")]
pub struct PyOrchestrator {
    inner: Orchestrator,
}

#[pymethods]
impl PyOrchestrator {
    #[new]
    #[pyo3(signature = (query, *, global_memory = None, max_memory_calls = None, memory_token_budget = None, memory_k = None, max_think_chars = None, max_profile_chars = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        query: &str,
        global_memory: Option<&Bound<'_, PyList>>,
        max_memory_calls: Option<usize>,
        memory_token_budget: Option<usize>,
        memory_k: Option<usize>,
        max_think_chars: Option<usize>,
        max_profile_chars: Option<usize>,
    ) -> PyResult<Self> {
        let d = OrchestratorConfig::default();
        let config = OrchestratorConfig {
            max_memory_calls: max_memory_calls.unwrap_or(d.max_memory_calls),
            memory_token_budget: memory_token_budget.unwrap_or(d.memory_token_budget),
            memory_k: memory_k.unwrap_or(d.memory_k),
            max_think_chars: max_think_chars.unwrap_or(d.max_think_chars),
            max_profile_chars: max_profile_chars.unwrap_or(d.max_profile_chars),
            ..d
        };
        let global = match global_memory {
            Some(list) => shown_list(list)?,
            None => Vec::new(),
        };
        Ok(PyOrchestrator { inner: Orchestrator::new(config, query, &global) })
    }

    /// The chat so far, as [{"role", "content"}] for the model's chat template.
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .messages()
            .iter()
            .map(|m| {
                let d = PyDict::new(py);
                d.set_item("role", m.role)?;
                d.set_item("content", &m.content)?;
                Ok(d)
            })
            .collect()
    }

    /// The Lark grammar the next model turn must follow.
    fn grammar(&self) -> String {
        self.inner.grammar()
    }

    /// Reads one model turn; returns the action ({"kind": "retrieve" | "answer", ...}).
    fn feed<'py>(&mut self, py: Python<'py>, output: &str) -> PyResult<Bound<'py, PyDict>> {
        let action = self.inner.feed(output);
        action_dict(py, &action)
    }

    /// Shows the hits of the pending memory call, within the memory token budget.
    #[pyo3(signature = (hits, token_count = None))]
    fn add_memories(&mut self, hits: &Bound<'_, PyList>, token_count: Option<Py<PyAny>>) -> PyResult<()> {
        let py = hits.py();
        let hits = shown_list(hits)?;
        match token_count {
            None => self.inner.add_memories(&hits, &estimate_tokens),
            Some(f) => {
                // A failing counter falls back to the estimate: the budget must hold regardless.
                let count = |text: &str| -> usize {
                    f.call1(py, (text,)).and_then(|n| n.extract::<usize>(py)).unwrap_or_else(|_| estimate_tokens(text))
                };
                self.inner.add_memories(&hits, &count);
            }
        }
        Ok(())
    }

    /// Ends the loop with the fallback answer (the host hit a limit or was cancelled).
    fn finish<'py>(&mut self, py: Python<'py>, reason: &str) -> PyResult<Bound<'py, PyDict>> {
        let action = self.inner.finish(reason);
        action_dict(py, &action)
    }

    #[getter]
    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    /// Ids of the memories shown to the model, in order.
    fn shown_ids(&self) -> Vec<i64> {
        self.inner.shown().iter().map(|m| m.id).collect()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("turns", s.turns)?;
        d.set_item("memory_calls", s.memory_calls)?;
        d.set_item("memory_tokens", s.memory_tokens)?;
        d.set_item("malformed_turns", s.malformed_turns)?;
        Ok(d)
    }
}

/// Per-query Recall@k and NDCG@k: `{"recall@10": array, "ndcg@10": array, ...}`.
#[pyfunction]
fn ranking_metrics<'py>(
    py: Python<'py>,
    rankings: Vec<Vec<i64>>,
    relevant: Vec<Vec<i64>>,
    ks: Vec<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    if rankings.len() != relevant.len() {
        return Err(PyRuntimeError::new_err(format!(
            "{} rankings but {} relevance lists",
            rankings.len(),
            relevant.len()
        )));
    }
    let (recall, ndcg) = py.detach(|| {
        (
            metrics::per_query(&rankings, &relevant, &ks, metrics::recall_at_k),
            metrics::per_query(&rankings, &relevant, &ks, metrics::ndcg_at_k),
        )
    });
    let out = PyDict::new(py);
    for (i, k) in ks.iter().enumerate() {
        out.set_item(format!("recall@{k}"), PyArray1::from_vec(py, recall[i].clone()))?;
        out.set_item(format!("ndcg@{k}"), PyArray1::from_vec(py, ndcg[i].clone()))?;
    }
    Ok(out)
}

/// Text made safe to show the model as data: no protocol tags, no control characters (the very
/// escaping the orchestrator applies, for prompts built in Python such as the model summarizer's).
#[pyfunction]
fn escape_text(text: &str) -> String {
    crate::orchestrator::escape(text)
}

/// The assistant's defaults (`OrchestratorConfig::default`), which every Python config derives.
#[pyfunction]
fn orchestrator_defaults<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = OrchestratorConfig::default();
    let out = PyDict::new(py);
    out.set_item("max_memory_calls", d.max_memory_calls)?;
    out.set_item("memory_token_budget", d.memory_token_budget)?;
    out.set_item("memory_k", d.memory_k)?;
    out.set_item("max_aspects", d.max_aspects)?;
    out.set_item("max_think_chars", d.max_think_chars)?;
    out.set_item("max_profile_chars", d.max_profile_chars)?;
    out.set_item("global_k", d.global_k)?;
    out.set_item("max_turn_tokens", d.max_turn_tokens)?;
    Ok(out)
}

/// A memory-call turn exactly as the model writes it (for the SFT teacher's traces).
#[pyfunction]
#[pyo3(signature = (reasoning, aspects, *, tier = None, category = None))]
fn render_call(reasoning: &str, aspects: Vec<String>, tier: Option<&str>, category: Option<&str>) -> String {
    protocol::render_call(reasoning, &aspects, tier, category)
}

/// An answer turn exactly as the model writes it, citing memories by id.
#[pyfunction]
fn render_answer(reasoning: &str, profile: &str, memory_ids: Vec<i64>) -> String {
    protocol::render_answer(reasoning, profile, &memory_ids)
}

/// A (possibly partial) turn as (reasoning, "" | "call" | "answer", action body so far).
#[pyfunction]
fn split_turn(text: &str) -> (String, &'static str, String) {
    let (reasoning, kind, body) = protocol::split_turn(text);
    (reasoning, kind.name(), body)
}

/// The ideal item profile of a possibly unfinished answer body, as far as it has streamed.
#[pyfunction]
fn partial_profile(body: &str) -> String {
    protocol::partial_profile(body)
}

/// The memory ids each tool-response block of a rendered prompt shows, block by block.
#[pyfunction]
fn tool_responses(prompt: &str) -> Vec<Vec<i64>> {
    protocol::tool_responses(prompt)
}

/// What `text`, the latest request of a conversation, asks for, given the earlier exchanges
/// (oldest first: query, shown (item id, year) in rank order, liked ids, disliked ids) and the
/// catalog's categories (`orchestrator::request`).
#[pyfunction]
#[pyo3(signature = (text, categories, earlier = Vec::new()))]
#[allow(clippy::type_complexity)]
fn plan_request<'py>(
    py: Python<'py>,
    text: &str,
    categories: Vec<String>,
    earlier: Vec<(String, Vec<(i64, Option<i32>)>, Vec<i64>, Vec<i64>)>,
) -> PyResult<Bound<'py, PyDict>> {
    let earlier: Vec<Prior> =
        earlier.into_iter().map(|(query, shown, liked, disliked)| Prior { query, shown, liked, disliked }).collect();
    let p = request::plan_request(text, &categories, &earlier);
    let out = PyDict::new(py);
    out.set_item("request", p.request)?;
    out.set_item(
        "follow_up",
        match p.follow_up {
            FollowUp::New => "new",
            FollowUp::Replace => "replace",
            FollowUp::Refine => "refine",
        },
    )?;
    out.set_item("wanted", p.wanted)?;
    out.set_item("avoided", p.avoided)?;
    out.set_item("preferred", p.preferred)?;
    out.set_item("avoid_phrases", p.avoid_phrases)?;
    out.set_item("anchors", p.anchors)?;
    out.set_item("exclude", p.exclude)?;
    out.set_item("liked", p.liked)?;
    out.set_item("disliked", p.disliked)?;
    out.set_item("min_year", p.min_year)?;
    out.set_item("max_year", p.max_year)?;
    Ok(out)
}

#[pyfunction]
fn import_kinds<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, ImportKind::ALL.iter().map(|k| k.name()))
}

#[pymodule(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMemoryStore>()?;
    m.add_class::<PyMemoryEntry>()?;
    m.add_class::<PyMemoryHit>()?;
    m.add_class::<PyItemHit>()?;
    m.add_class::<PyGroundedItem>()?;
    m.add_class::<PyGroundRequest>()?;
    m.add("GROUNDING_SIGNALS", SIGNALS.to_vec())?;
    m.add("GROUNDING_SATURATION", SATURATION)?;
    m.add_class::<PyItem>()?;
    m.add_class::<PyOrchestrator>()?;
    m.add_function(wrap_pyfunction!(ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(import_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(escape_text, m)?)?;
    m.add_function(wrap_pyfunction!(orchestrator_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(render_call, m)?)?;
    m.add_function(wrap_pyfunction!(render_answer, m)?)?;
    m.add_function(wrap_pyfunction!(split_turn, m)?)?;
    m.add_function(wrap_pyfunction!(partial_profile, m)?)?;
    m.add_function(wrap_pyfunction!(tool_responses, m)?)?;
    m.add_function(wrap_pyfunction!(plan_request, m)?)?;
    m.add("TURN_STOP_STRINGS", PyTuple::new(m.py(), protocol::STOP_STRINGS)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
