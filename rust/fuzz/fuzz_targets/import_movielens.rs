//! The MovieLens folder importers. The first byte picks the layout (bits 0..1): recbole's
//! ml-100k.item/.user/.inter, GroupLens' u.item/u.user/u.data, or the CSV sets' movies.csv and
//! ratings.csv (bit 1 set: a folder, else movies.csv alone); for the 100K layouts bit 2 adds a
//! keyword catalog. The rest of the input, split at `mrrec_fuzz::FILE_SEPARATOR`, fills the files
//! in that order (the keyword catalog last); a file the input runs out before is absent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrrec_core::{import, ImportKind, ImportOptions};
use mrrec_fuzz::{check_outcome, scratch, split_files, write_folder, CheckingSink};

const ALL: [&str; 9] = [
    "ml-100k.item",
    "ml-100k.user",
    "ml-100k.inter",
    "u.item",
    "u.user",
    "u.data",
    "movies.csv",
    "ratings.csv",
    "keywords.csv",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let (kind, names): (ImportKind, &[&str]) = match pick & 3 {
        0 => (ImportKind::MovieLens100k, &ALL[0..3]),
        1 => (ImportKind::MovieLens100k, &ALL[3..6]),
        2 => (ImportKind::MovieLensCsv, &ALL[6..7]),
        _ => (ImportKind::MovieLensCsv, &ALL[6..8]),
    };
    let keywords = kind == ImportKind::MovieLens100k && pick & 4 != 0;
    let mut wanted: Vec<&str> = names.to_vec();
    if keywords {
        wanted.push("keywords.csv");
    }
    let parts = split_files(body, wanted.len());
    let dir = scratch().join("movielens");
    let files: Vec<(&str, Option<&[u8]>)> = ALL
        .iter()
        .map(|name| (*name, wanted.iter().position(|w| w == name).and_then(|i| parts.get(i).copied())))
        .collect();
    write_folder(&dir, &files);
    let opts = ImportOptions { keywords: keywords.then(|| dir.join("keywords.csv")), ..Default::default() };
    let path = if pick & 3 == 2 { dir.join("movies.csv") } else { dir.clone() };
    let mut sink = CheckingSink::new(true);
    let result = import::parse(kind, &path, &opts, &mut sink);
    let paths: Vec<_> = ALL.iter().map(|f| dir.join(f)).collect();
    check_outcome(result, &paths, true);
});
