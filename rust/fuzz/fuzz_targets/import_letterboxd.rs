//! The Letterboxd export importer, a single CSV or a whole export folder (ratings.csv,
//! reviews.csv, watched.csv). The first byte: bit 3 set imports one file; otherwise bits 0..2 say
//! which of the folder's three files exist, and the rest of the input, split at
//! `mrrec_fuzz::FILE_SEPARATOR`, fills them in that order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrrec_core::{import, ImportKind, ImportOptions};
use mrrec_fuzz::{check_outcome, scratch, split_files, write_folder, CheckingSink};

const FILES: [&str; 3] = ["ratings.csv", "reviews.csv", "watched.csv"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let opts = ImportOptions { user: Some("fuzz".into()), ..Default::default() };
    let mut sink = CheckingSink::new(false);
    let dir = scratch().join("letterboxd");
    if pick & 8 != 0 {
        write_folder(&dir, &[("ratings.csv", Some(body)), ("reviews.csv", None), ("watched.csv", None)]);
        let path = dir.join("ratings.csv");
        let result = import::parse(ImportKind::Letterboxd, &path, &opts, &mut sink);
        check_outcome(result, &[path], false);
        return;
    }
    let present: Vec<&str> = FILES.iter().enumerate().filter(|(i, _)| pick & (1 << i) != 0).map(|(_, f)| *f).collect();
    let mut parts = split_files(body, present.len().max(1)).into_iter();
    let files: Vec<(&str, Option<&[u8]>)> = FILES
        .iter()
        .map(|f| (*f, if present.contains(f) { Some(parts.next().unwrap_or(b"")) } else { None }))
        .collect();
    write_folder(&dir, &files);
    let result = import::parse(ImportKind::Letterboxd, &dir, &opts, &mut sink);
    let paths: Vec<_> = FILES.iter().map(|f| dir.join(f)).collect();
    check_outcome(result, &paths, true);
});
