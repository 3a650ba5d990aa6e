//! Collaborative grounding over the store: the derived collaborative index (rebuilt from the
//! records table, like the dense indexes from their embeddings) and the fused ranking that the
//! assistant, the evaluation and training rollouts all call ([`MemoryStore::ground_fused`]).
//!
//! Kept current without rebuilding on every write: a user's own interactions are read live at
//! each request (a like counts at once), while the item-item model is rebuilt when the
//! interactions changed by 1% or more since it was built (an import; `rebuild_collab` forces it).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{params, params_from_iter, Connection};

use super::indexes::EntryMeta;
use super::{for_id_chunks, lock, read_generations, MemoryStore};
use crate::collab::{CollabModel, CollabParams, History, Similarity};
use crate::error::{Error, Result};
use crate::grounding::{named_items, Signals, Weights, POPULARITY, PROFILE, REQUEST, SEED_CF, SIGNALS, USER_CF};
use crate::model::ItemHit;
use crate::vector::{dot, from_blob};

/// The saved collaborative index, beside the database (derived: deleting it costs a rebuild).
pub const COLLAB_FILE: &str = "collab.bin";

/// Writes `bytes` to a temporary file, then renames it over `path`: readers see the old file or
/// the new one, never a part, and a failed write (a full disk) leaves no temporary file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    // A temporary file of this save's own: another process may be saving the index too.
    crate::dense::remove_stale_temps(path);
    let tmp = crate::dense::temp_path(path);
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| Error::io(path, e).on_disk(path))
}

/// A dislike's source; every other record is a positive interaction.
const DISLIKE_SOURCE: &str = "feedback:dislike";

/// The catalog as grounding scores it: every item's unit vector, categories and title, in one
/// flat matrix (a scan of 14k × 384 floats takes ~2 ms, under the 20 ms budget).
pub(crate) struct CatalogMatrix {
    generation: i64,
    items: Vec<i64>,
    /// Row-major `items × dims`; zeros for an item not yet embedded.
    vectors: Vec<f32>,
    dims: usize,
    categories: Vec<Vec<i64>>,
    years: Vec<Option<i32>>,
    titles_by_year: HashMap<i32, Vec<(String, i64)>>,
}

pub(crate) struct CollabState {
    /// The interactions generation it was built at.
    generation: i64,
    model: CollabModel,
}

#[derive(Default)]
pub(crate) struct GroundingCache {
    catalog: Mutex<Option<Arc<CatalogMatrix>>>,
    collab: Mutex<Option<Arc<CollabState>>>,
}

/// What a grounding request knows; any part may be missing (no profile for the hybrid baseline,
/// no user for a guest).
#[derive(Debug, Clone, Default)]
pub struct GroundRequest {
    pub profile: Option<Vec<f32>>,
    pub request: Option<Vec<f32>>,
    /// The profile's text, for the items it names (seeds of `seed_cf`).
    pub profile_text: Option<String>,
    pub user: Option<String>,
    /// Memory entries the answer cited: their behavior records' items seed `seed_cf`.
    pub cited_memory: Vec<i64>,
    pub include_seen: bool,
    pub exclude: Vec<i64>,
    pub categories: Vec<String>,
    /// The similarity behind both CF signals; `None`: EASE where built, else item-kNN.
    pub similarity: Option<Similarity>,
    /// What the conversation rules out or tones down ("nothing too gory"), embedded: items close
    /// to it are penalised ([`AVOID_PENALTY`]).
    pub avoid: Option<Vec<f32>>,
    /// Categories ruled out ("not a drama"): items with any of them are never candidates.
    pub avoid_categories: Vec<String>,
    /// Categories asked for, where the request embedding alone drifts from them: items with
    /// any get [`PREFER_BONUS`].
    pub prefer_categories: Vec<String>,
    /// More seeds of `seed_cf` (items the user pointed at or liked in the conversation), and
    /// items it counts against (disliked or ruled out there).
    pub seeds: Vec<i64>,
    pub negative_seeds: Vec<i64>,
    /// Release years the request allows ("older ones", "from the 80s"), inclusive.
    pub min_year: Option<i32>,
    pub max_year: Option<i32>,
}

/// How far an item's closeness to what the user ruled out pulls it down: its z-score over the
/// candidates (above average only), times this, against fused scores whose signals weigh
/// 0.1 to 0.75 each. Strong enough that the closest items drop out of the top ten, since the user
/// said so, while a phrase that matches nothing in particular changes little.
pub const AVOID_PENALTY: f32 = 1.5;

/// The bonus, in z-score units, of an item in a preferred category: about what the request
/// signal spreads over the catalog, so the category leads without erasing the other signals.
pub const PREFER_BONUS: f32 = 1.0;

/// One grounded item and what put it there.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundedItem {
    pub hit: ItemHit,
    /// Each signal's weighted z-score, in [`SIGNALS`] order (with `adjustment`, they sum to
    /// `hit.score`).
    pub contributions: [f32; SIGNALS.len()],
    /// What the conversation added to its score: a bonus for a preferred category, less a
    /// penalty for closeness to what the user ruled out.
    pub adjustment: f32,
    /// Up to two items of the user's history or the seeds that most support it, best first.
    pub because: Vec<i64>,
}

/// What the collaborative index is built from and what building it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CollabReport {
    pub items: usize,
    pub interactions: usize,
    pub ease: bool,
    pub seconds: f64,
}

fn read_meta(conn: &Connection, key: &str) -> Result<i64> {
    Ok(conn.query_row("SELECT ifnull((SELECT value FROM meta WHERE key = ?1), 0)", params![key], |r| r.get(0))?)
}

/// Every user's history, signed (see [`DISLIKE_SOURCE`]).
fn load_histories(conn: &Connection) -> Result<Vec<History>> {
    let mut stmt = conn.prepare("SELECT user_id, item_id, source FROM records ORDER BY user_id, timestamp, id")?;
    let mut rows = stmt.query([])?;
    let mut out: Vec<History> = Vec::new();
    let mut current = None;
    while let Some(row) = rows.next()? {
        let user: i64 = row.get(0)?;
        if current != Some(user) {
            current = Some(user);
            out.push(Vec::new());
        }
        let value = if row.get_ref(2)?.as_str()? == DISLIKE_SOURCE { -1.0 } else { 1.0 };
        out.last_mut().expect("pushed").push((row.get(1)?, value));
    }
    Ok(out)
}

fn load_catalog(conn: &Connection, generation: i64, dims: usize) -> Result<CatalogMatrix> {
    let mut stmt = conn.prepare("SELECT id, embedding, scope, lower(title), year FROM items ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut m = CatalogMatrix {
        generation,
        items: Vec::new(),
        vectors: Vec::new(),
        dims,
        categories: Vec::new(),
        years: Vec::new(),
        titles_by_year: HashMap::new(),
    };
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        match row.get_ref(1)?.as_blob_or_null()? {
            Some(blob) => {
                let v = from_blob(blob, dims)?;
                let norm = dot(&v, &v).sqrt().max(f32::MIN_POSITIVE);
                m.vectors.extend(v.iter().map(|x| x / norm));
            }
            None => m.vectors.extend(std::iter::repeat_n(0.0, dims)),
        }
        m.items.push(id);
        m.categories.push(EntryMeta::from_scope(row.get_ref(2)?.as_str()?).categories);
        let year = row.get::<_, Option<i32>>(4)?;
        if let Some(year) = year {
            m.titles_by_year.entry(year).or_default().push((row.get(3)?, id));
        }
        m.years.push(year);
    }
    Ok(m)
}

impl MemoryStore {
    /// The catalog matrix, reloaded when the catalog changed.
    fn catalog_matrix(&self) -> Result<Arc<CatalogMatrix>> {
        let mut slot = lock(&self.grounding.catalog);
        let conn = self.reader();
        let generation = read_generations(&conn)?.catalog;
        if let Some(m) = slot.as_ref().filter(|m| m.generation == generation) {
            return Ok(m.clone());
        }
        let dims = Self::stored_dimensions(&conn)?.unwrap_or(self.opts.dimensions);
        conn.execute_batch("BEGIN")?;
        let loaded = load_catalog(&conn, generation, dims);
        conn.execute_batch("COMMIT")?;
        let m = Arc::new(loaded?);
        *slot = Some(m.clone());
        Ok(m)
    }

    /// The collaborative model: the one in memory, else the saved one ([`COLLAB_FILE`]), while
    /// the interactions changed by less than 1% since it was built; else (or when `force`)
    /// rebuilt from the records and saved, so the next process starts with it.
    fn collab_state(&self, force: bool) -> Result<(Arc<CollabState>, Option<CollabReport>)> {
        let mut slot = lock(&self.grounding.collab);
        let generation = read_meta(&self.reader(), "interactions_generation")?;
        let current = |built: i64, model: &CollabModel| {
            let changed = (generation - built).unsigned_abs() as usize;
            changed == 0 || changed < model.interactions.div_ceil(100)
        };
        if !force {
            if let Some(state) = slot.as_ref().filter(|s| current(s.generation, &s.model)) {
                return Ok((state.clone(), None));
            }
            let path = self.home.join(COLLAB_FILE);
            let saved = std::fs::read(&path).ok().and_then(|b| CollabModel::from_bytes(&b));
            if let Some((built, model)) = saved.filter(|(built, model)| current(*built, model)) {
                let state = Arc::new(CollabState { generation: built, model });
                *slot = Some(state.clone());
                return Ok((state, None));
            }
        }
        let started = Instant::now();
        let histories = {
            let conn = self.reader();
            conn.execute_batch("BEGIN")?;
            let h = load_histories(&conn);
            conn.execute_batch("COMMIT")?;
            h?
        };
        let model = CollabModel::build(&histories, CollabParams::default());
        let report = CollabReport {
            items: model.items().len(),
            interactions: model.interactions,
            ease: model.has_ease(),
            seconds: started.elapsed().as_secs_f64(),
        };
        // Best effort: a home that cannot be written (read-only, full) still grounds, and the
        // next process rebuilds; only a rebuild the user asked for (`force`) says it failed.
        let saved = write_atomically(&self.home.join(COLLAB_FILE), &model.to_bytes(generation));
        if force {
            saved?;
        }
        let state = Arc::new(CollabState { generation, model });
        *slot = Some(state.clone());
        Ok((state, Some(report)))
    }

    /// Loads the collaborative index (the saved one, or rebuilt if stale or missing) ahead of
    /// the first grounding; says what a rebuild did, `None` when none was needed.
    pub fn open_collab(&self) -> Result<Option<CollabReport>> {
        Ok(self.collab_state(false)?.1)
    }

    /// Rebuilds the collaborative index from the records now (after an import, `mrrec index
    /// rebuild`), and says what it holds and what the build took.
    pub fn rebuild_collab(&self) -> Result<CollabReport> {
        Ok(self.collab_state(true)?.1.expect("a forced build reports"))
    }

    /// A user's interactions, signed, oldest first (empty for an unknown or absent user).
    fn signed_history(&self, user: Option<&str>) -> Result<History> {
        let Some(user) = user else { return Ok(Vec::new()) };
        let conn = self.reader();
        let uid = Self::require_user(&conn, user)?;
        let mut stmt =
            conn.prepare_cached("SELECT item_id, source FROM records WHERE user_id = ?1 ORDER BY timestamp, id")?;
        let rows = stmt.query_map(params![uid], |r| {
            Ok((r.get::<_, i64>(0)?, if r.get_ref(1)?.as_str()? == DISLIKE_SOURCE { -1.0 } else { 1.0 }))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Items of the behavior records among `memory_ids`.
    fn cited_items(&self, memory_ids: &[i64]) -> Result<Vec<i64>> {
        let conn = self.reader();
        let mut out = Vec::new();
        for_id_chunks(memory_ids, |ph, chunk| {
            let mut stmt = conn.prepare(&format!(
                "SELECT item_id FROM memory WHERE id IN ({ph}) AND tier = 0 AND item_id IS NOT NULL ORDER BY id"
            ))?;
            let rows = stmt.query_map(params_from_iter(chunk), |r| r.get::<_, i64>(0))?;
            for row in rows {
                out.push(row?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every signal over the request's candidates, z-scored, and the seeds of `seed_cf`. The
    /// evaluation fits the weights on these.
    pub fn grounding_signals(&self, req: &GroundRequest) -> Result<(Signals, Vec<i64>)> {
        let (collab, _) = self.collab_state(false)?;
        let (signals, _, seeds) = self.signals_with(&collab.model, req)?;
        Ok((signals, seeds))
    }

    /// [`MemoryStore::grounding_signals`] over `model`, with the user's signed history.
    fn signals_with(&self, model: &CollabModel, req: &GroundRequest) -> Result<(Signals, History, Vec<i64>)> {
        let catalog = self.catalog_matrix()?;
        let similarity = req.similarity.unwrap_or_else(|| model.best_similarity());
        let history = self.signed_history(req.user.as_deref())?;

        let mut banned: HashSet<i64> = req.exclude.iter().copied().collect();
        if !req.include_seen {
            banned.extend(history.iter().map(|(i, _)| *i));
        }
        let category_ids = Self::category_ids(&self.reader(), &req.categories)?;
        let avoided_ids = Self::category_ids(&self.reader(), &req.avoid_categories)?;
        let preferred_ids = Self::category_ids(&self.reader(), &req.prefer_categories)?;
        let in_years = |c: usize| match catalog.years[c] {
            Some(y) => req.min_year.is_none_or(|m| y >= m) && req.max_year.is_none_or(|m| y <= m),
            None => req.min_year.is_none() && req.max_year.is_none(),
        };
        let wanted = |c: usize| {
            !banned.contains(&catalog.items[c])
                && (req.categories.is_empty() || catalog.categories[c].iter().any(|x| category_ids.contains(x)))
                && !catalog.categories[c].iter().any(|x| avoided_ids.contains(x))
                && in_years(c)
        };
        let candidates: Vec<usize> = (0..catalog.items.len()).filter(|c| wanted(*c)).collect();

        let mut seeds: Vec<i64> = Vec::new();
        if let Some(text) = &req.profile_text {
            seeds.extend(named_items(text, |y| catalog.titles_by_year.get(&y).map_or(&[], Vec::as_slice)));
        }
        for item in self.cited_items(&req.cited_memory)?.into_iter().chain(req.seeds.iter().copied()) {
            if !seeds.contains(&item) && !req.negative_seeds.contains(&item) {
                seeds.push(item);
            }
        }

        let cosine = |query: &Option<Vec<f32>>| -> Result<Vec<f32>> {
            let Some(q) = query else { return Ok(vec![0.0; candidates.len()]) };
            if q.len() != catalog.dims {
                return Err(crate::Error::InvalidArgument(format!(
                    "query vector has {} dimensions, the catalog has {}",
                    q.len(),
                    catalog.dims
                )));
            }
            let norm = dot(q, q).sqrt().max(f32::MIN_POSITIVE);
            Ok(candidates
                .iter()
                .map(|c| dot(q, &catalog.vectors[c * catalog.dims..(c + 1) * catalog.dims]) / norm)
                .collect())
        };
        // CF scores come per model item; candidates the model does not know score 0.
        let on_candidates = |scores: Vec<f32>| -> Vec<f32> {
            candidates.iter().map(|c| model.position_of(catalog.items[*c]).map_or(0.0, |p| scores[p])).collect()
        };
        let seed_history: History =
            seeds.iter().map(|i| (*i, 1.0)).chain(req.negative_seeds.iter().map(|i| (*i, -1.0))).collect();
        let mut values: [Vec<f32>; SIGNALS.len()] = Default::default();
        values[PROFILE] = cosine(&req.profile)?;
        values[REQUEST] = cosine(&req.request)?;
        values[USER_CF] = on_candidates(model.scores(&history, similarity));
        values[SEED_CF] = on_candidates(model.scores(&seed_history, similarity));
        values[POPULARITY] = candidates.iter().map(|c| model.popularity(catalog.items[*c]).ln_1p()).collect();
        let mut adjustment = Vec::new();
        if req.avoid.is_some() || !preferred_ids.is_empty() {
            let closeness = match &req.avoid {
                Some(_) => Signals::zscores(cosine(&req.avoid)?),
                None => vec![0.0; candidates.len()],
            };
            adjustment = candidates
                .iter()
                .zip(closeness)
                .map(|(c, z)| {
                    let preferred = catalog.categories[*c].iter().any(|x| preferred_ids.contains(x));
                    (if preferred { PREFER_BONUS } else { 0.0 }) - AVOID_PENALTY * z.max(0.0)
                })
                .collect();
        }
        let mut signals = Signals { items: candidates.iter().map(|c| catalog.items[*c]).collect(), values, adjustment };
        signals.normalize();
        Ok((signals, history, seeds))
    }

    /// The `k` best catalog items for a request under `weights`, with what drove each.
    pub fn ground_fused(&self, req: &GroundRequest, weights: &Weights, k: usize) -> Result<Vec<GroundedItem>> {
        let (collab, _) = self.collab_state(false)?;
        let model = &collab.model;
        let (signals, history, seeds) = self.signals_with(model, req)?;
        let top = signals.top(weights, k);
        let similarity = req.similarity.unwrap_or_else(|| model.best_similarity());
        // Supporters: liked history items (CF) and the seeds, by their similarity to the item.
        let mut support: Vec<i64> = Vec::new();
        if weights.uses(USER_CF) {
            support.extend(history.iter().filter(|(_, v)| *v > 0.0).map(|(i, _)| *i));
        }
        if weights.uses(SEED_CF) {
            support.extend(seeds.iter().filter(|s| !support.contains(s)).copied().collect::<Vec<_>>());
        }
        let scored: Vec<(i64, f32)> = top.iter().map(|(c, score)| (signals.items[*c], *score)).collect();
        let hits = self.item_hits(scored)?;
        Ok(hits
            .into_iter()
            .zip(&top)
            .map(|(hit, (c, _))| {
                let mut because: Vec<(i64, f32)> = support
                    .iter()
                    .map(|s| (*s, model.similarity(*s, hit.item_id, similarity)))
                    .filter(|(_, sim)| *sim > 0.0)
                    .collect();
                because.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                because.truncate(2);
                GroundedItem {
                    contributions: signals.contributions(weights, *c),
                    adjustment: signals.adjustment.get(*c).copied().unwrap_or(0.0),
                    because: because.into_iter().map(|(i, _)| i).collect(),
                    hit,
                }
            })
            .collect())
    }
}
