//! MovieLens: the 100K set (recbole's typed TSV, or GroupLens' original u.* files) and the
//! CSV layout of the larger sets (movies.csv with optional keywords, ratings.csv).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::source::{split_list, CsvSource, Encoding, Fields};
use super::{ImportOptions, InteractionRow, ItemRef, ItemRow, Sink};
use crate::error::{Error, Location, Result};
use crate::text::{norm_key, split_title_year, title_variants};

/// Rows between progress callbacks.
pub(super) const PROGRESS_EVERY: u64 = 4096;

pub(crate) const GENRES_100K: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

enum Layout100k {
    Recbole { item: PathBuf, user: PathBuf, inter: PathBuf },
    GroupLens { item: PathBuf, user: PathBuf, data: PathBuf },
}

fn layout_100k(dir: &Path) -> Result<Layout100k> {
    if dir.join("ml-100k.inter").is_file() {
        return Ok(Layout100k::Recbole {
            item: dir.join("ml-100k.item"),
            user: dir.join("ml-100k.user"),
            inter: dir.join("ml-100k.inter"),
        });
    }
    if dir.join("u.data").is_file() {
        return Ok(Layout100k::GroupLens {
            item: dir.join("u.item"),
            user: dir.join("u.user"),
            data: dir.join("u.data"),
        });
    }
    Err(Error::io(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a MovieLens 100K folder (expected ml-100k.inter/.item/.user or u.data/u.item/u.user)",
        ),
    ))
}

pub(super) fn files_100k(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = match layout_100k(dir)? {
        Layout100k::Recbole { item, user, inter } => vec![item, user, inter],
        Layout100k::GroupLens { item, user, data } => vec![item, user, data],
    };
    for f in &files {
        if !f.is_file() {
            return Err(Error::io(f, std::io::Error::new(std::io::ErrorKind::NotFound, "missing")));
        }
    }
    Ok(files)
}

/// Keyword lookup built from the MovieLens 25M keyword catalog, keyed by title variant + year.
struct KeywordIndex {
    by_key: HashMap<String, Vec<String>>,
}

impl KeywordIndex {
    fn load(path: &Path, sink: &mut dyn Sink) -> Result<(Self, u64)> {
        let mut src = CsvSource::open(path, b',', true, None, Encoding::Utf8)?;
        src.require(&["title", "keywords"])?;
        let mut by_key = HashMap::new();
        while let Some(row) = src.next_row()? {
            let (title, year) = split_title_year(&row.required("title")?);
            let keywords = split_list(row.get("keywords")?);
            for variant in title_variants(&title) {
                by_key.entry(norm_key(&variant, year)).or_insert_with(|| keywords.clone());
            }
        }
        sink.progress(src.bytes_read())?;
        Ok((KeywordIndex { by_key }, src.bytes_read()))
    }

    /// Keywords for a title, trying each title variant with the year and a year either side
    /// (release years differ by one between the two sets for some films).
    fn find(&self, title: &str, year: Option<i32>) -> Option<&Vec<String>> {
        let years: Vec<Option<i32>> = match year {
            Some(y) => vec![Some(y), Some(y - 1), Some(y + 1)],
            None => vec![None],
        };
        for y in years {
            for variant in title_variants(title) {
                if let Some(k) = self.by_key.get(&norm_key(&variant, y)) {
                    return Some(k);
                }
            }
        }
        None
    }
}

pub(super) fn import_100k(dir: &Path, opts: &ImportOptions, sink: &mut dyn Sink) -> Result<()> {
    // The keyword file is read first, so progress counts its bytes first.
    let (keywords, mut done) = match &opts.keywords {
        Some(path) => {
            let (index, bytes) = KeywordIndex::load(path, sink)?;
            (Some(index), bytes)
        }
        None => (None, 0),
    };
    match layout_100k(dir)? {
        Layout100k::Recbole { item, user, inter } => {
            let mut src = CsvSource::open(&item, b'\t', false, None, Encoding::Utf8)?;
            src.require(&["item_id", "movie_title", "release_year", "class"])?;
            while let Some(row) = src.next_row()? {
                let item = ItemRow {
                    alias: format!("ml100k:{}", row.required("item_id")?),
                    title: row.required("movie_title")?.to_string(),
                    // The set marks one film's year "unkonwn" (sic): a word means no year.
                    year: match row.get("release_year")? {
                        Some(y) if y.chars().all(char::is_alphabetic) => None,
                        _ => row.year("release_year")?,
                    },
                    categories: row.get("class")?.map_or_else(Vec::new, |c| {
                        c.split_whitespace().filter(|g| *g != "unknown").map(str::to_string).collect()
                    }),
                    ..Default::default()
                };
                add_item(item, &row.at, keywords.as_ref(), sink)?;
            }
            done += src.bytes_read();
            sink.progress(done)?;
            import_users(&user, b'\t', None, sink, &mut done)?;
            let mut src = CsvSource::open(&inter, b'\t', false, None, Encoding::Utf8)?;
            src.require(&["user_id", "item_id", "rating", "timestamp"])?;
            ratings(&mut src, sink, done, "user_id", "item_id", "ml100k")?;
        }
        Layout100k::GroupLens { item, user, data } => {
            // u.item: id|title (year)|release date|video date|IMDb URL|19 genre flags, Latin-1.
            let mut names = vec!["item_id", "title", "release_date", "video_release_date", "imdb_url"];
            names.extend(GENRES_100K);
            let mut src = CsvSource::open(&item, b'|', false, Some(&names), Encoding::Latin1)?;
            while let Some(row) = src.next_row()? {
                let (title, year) = split_title_year(&row.required("title")?);
                let mut categories = Vec::new();
                for g in &GENRES_100K[1..] {
                    match row.get(&g.to_lowercase())? {
                        Some("1") => categories.push(g.to_string()),
                        Some("0") | None => {}
                        Some(other) => {
                            return Err(Error::input(row.at.field(g), format!("genre flag {other:?} is not 0 or 1")))
                        }
                    }
                }
                let item = ItemRow {
                    alias: format!("ml100k:{}", row.required("item_id")?),
                    title,
                    year,
                    categories,
                    ..Default::default()
                };
                add_item(item, &row.at, keywords.as_ref(), sink)?;
            }
            done += src.bytes_read();
            sink.progress(done)?;
            let user_cols = ["user_id", "age", "gender", "occupation", "zip_code"];
            import_users(&user, b'|', Some(&user_cols), sink, &mut done)?;
            let cols = ["user_id", "item_id", "rating", "timestamp"];
            let mut src = CsvSource::open(&data, b'\t', false, Some(&cols), Encoding::Utf8)?;
            ratings(&mut src, sink, done, "user_id", "item_id", "ml100k")?;
        }
    }
    Ok(())
}

fn add_item(mut item: ItemRow, at: &Location, keywords: Option<&KeywordIndex>, sink: &mut dyn Sink) -> Result<()> {
    if let Some(k) = keywords.and_then(|k| k.find(&item.title, item.year)) {
        item.keywords = k.clone();
        sink.report().keywords_matched += 1;
    }
    sink.item(item, at)
}

fn import_users(path: &Path, delimiter: u8, names: Option<&[&str]>, sink: &mut dyn Sink, done: &mut u64) -> Result<()> {
    let mut src = CsvSource::open(path, delimiter, false, names, Encoding::Utf8)?;
    src.require(&["user_id"])?;
    while let Some(row) = src.next_row()? {
        let id = row.required("user_id")?.to_string();
        let mut attrs = row.extra(&["user_id"])?;
        if let Some(Value::String(age)) = attrs.get("age") {
            let age: i64 =
                age.parse().map_err(|_| Error::input(row.at.field("age"), format!("{age:?} is not a number")))?;
            attrs.insert("age".into(), Value::from(age));
        }
        sink.user(&id, attrs, &row.at)?;
    }
    *done += src.bytes_read();
    sink.progress(*done)
}

/// Streams a ratings table; `namespace` prefixes item ids to match the catalog's aliases.
fn ratings(
    src: &mut CsvSource,
    sink: &mut dyn Sink,
    offset: u64,
    user_col: &str,
    item_col: &str,
    namespace: &str,
) -> Result<()> {
    let mut n = 0u64;
    while let Some(row) = src.next_row()? {
        let interaction = InteractionRow {
            user: row.required(user_col)?.to_string(),
            item: ItemRef::Alias(format!("{namespace}:{}", row.required(item_col)?)),
            rating: row.rating("rating")?,
            timestamp: row.timestamp("timestamp")?,
            text: None,
        };
        sink.interaction(interaction, &row.at)?;
        n += 1;
        if n % PROGRESS_EVERY == 0 {
            sink.progress(offset + src.bytes_read())?;
        }
    }
    sink.progress(offset + src.bytes_read())
}

fn movies_file(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    for name in ["movies.csv", "movies_w_keywords.csv"] {
        if path.join(name).is_file() {
            return Ok(path.join(name));
        }
    }
    Err(Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::NotFound, "no movies.csv or movies_w_keywords.csv here"),
    ))
}

pub(super) fn files_csv(path: &Path) -> Result<Vec<PathBuf>> {
    let mut files = vec![movies_file(path)?];
    if path.is_dir() && path.join("ratings.csv").is_file() {
        files.push(path.join("ratings.csv"));
    }
    Ok(files)
}

pub(super) fn import_csv(path: &Path, sink: &mut dyn Sink) -> Result<()> {
    let files = files_csv(path)?;
    let mut src = CsvSource::open(&files[0], b',', true, None, Encoding::Utf8)?;
    src.require(&["movieid", "title", "genres"])?;
    while let Some(row) = src.next_row()? {
        let (title, year) = split_title_year(&row.required("title")?);
        let categories = split_list(row.get("genres")?).into_iter().filter(|g| g != "(no genres listed)").collect();
        let mut attributes = Map::new();
        if let Some(id) = row.get("movieid")? {
            attributes.insert("movielens_id".into(), Value::String(id.into()));
        }
        let item = ItemRow {
            alias: format!("ml:{}", row.required("movieid")?),
            title,
            year,
            categories,
            keywords: split_list(row.get("keywords")?),
            attributes,
            ..Default::default()
        };
        sink.item(item, &row.at)?;
    }
    let done = src.bytes_read();
    sink.progress(done)?;
    if let Some(ratings_path) = files.get(1) {
        let mut src = CsvSource::open(ratings_path, b',', true, None, Encoding::Utf8)?;
        src.require(&["userid", "movieid", "rating"])?;
        ratings(&mut src, sink, done, "userid", "movieid", "ml")?;
    }
    Ok(())
}
