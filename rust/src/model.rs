//! Domain types shared by the store, search and bindings.

use crate::error::{Error, Result};

/// The memory tiers of MR.Rec: three user-local tiers and the cross-user global tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Behavior = 0,
    Pattern = 1,
    Profile = 2,
    Global = 3,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Behavior, Tier::Pattern, Tier::Profile, Tier::Global];
    pub const LOCAL: [Tier; 3] = [Tier::Behavior, Tier::Pattern, Tier::Profile];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Behavior => "behavior",
            Tier::Pattern => "pattern",
            Tier::Profile => "profile",
            Tier::Global => "global",
        }
    }

    pub fn parse(name: &str) -> Result<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown memory tier {name:?} (expected behavior, pattern, profile or global)"
            ))
        })
    }

    pub fn from_code(code: i64) -> Result<Tier> {
        Tier::ALL
            .into_iter()
            .find(|t| *t as i64 == code)
            .ok_or_else(|| Error::InvalidArgument(format!("bad tier code {code} in database")))
    }
}

/// A memory entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEntry {
    pub id: i64,
    pub tier: Tier,
    /// External user id; `None` for global memory.
    pub user: Option<String>,
    pub categories: Vec<String>,
    pub text: String,
    /// Ids of the behavior records (or memory entries) this entry was derived from.
    pub source_ids: Vec<i64>,
    /// External id of the item a behavior entry is about.
    pub item: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new memory entry to write. A vector may be supplied; otherwise it is embedded later.
#[derive(Debug, Clone, Default)]
pub struct NewMemory {
    pub tier: Option<Tier>,
    pub user: Option<String>,
    pub categories: Vec<String>,
    pub text: String,
    pub source_ids: Vec<i64>,
    pub vector: Option<Vec<f32>>,
}

/// One result of a memory search, with how each retriever ranked it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryHit {
    pub entry: MemoryEntry,
    /// Reciprocal-rank-fusion score (or the single retriever's score in dense/lexical mode).
    pub score: f64,
    pub dense_score: Option<f32>,
    pub lexical_score: Option<f64>,
}

/// A catalog item returned by grounding.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemHit {
    pub item_id: i64,
    pub ext_id: String,
    pub title: String,
    pub year: Option<i32>,
    pub categories: Vec<String>,
    pub score: f32,
}

/// A catalog item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub item_id: i64,
    pub ext_id: String,
    pub title: String,
    pub year: Option<i32>,
    pub categories: Vec<String>,
    pub keywords: Vec<String>,
    pub description: Option<String>,
    pub text: String,
}

/// Retrieval mode of a memory search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    Hybrid,
    Dense,
    Lexical,
}

impl SearchMode {
    pub fn parse(name: &str) -> Result<SearchMode> {
        match name {
            "hybrid" => Ok(SearchMode::Hybrid),
            "dense" => Ok(SearchMode::Dense),
            "lexical" => Ok(SearchMode::Lexical),
            _ => {
                Err(Error::InvalidArgument(format!("unknown search mode {name:?} (expected hybrid, dense or lexical)")))
            }
        }
    }
}

/// Which memory entries a search may return. Global entries pass the user filter: they belong
/// to no user. Empty `tiers` / `categories` mean no restriction.
#[derive(Debug, Clone, Default)]
pub struct MemoryFilter {
    pub user: Option<String>,
    pub tiers: Vec<Tier>,
    pub categories: Vec<String>,
    pub exclude: Vec<i64>,
}

/// Counts reported by `stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub users: i64,
    pub items: i64,
    pub interactions: i64,
    pub memory_by_tier: [i64; 4],
    pub pending_item_embeddings: i64,
    pub pending_memory_embeddings: i64,
    pub conversations: i64,
}
