//! The CSV importers (`items-csv`, `interactions-csv`): the first byte picks which, the rest is
//! the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrrec_core::{import, ImportKind, ImportOptions};
use mrrec_fuzz::{check_outcome, scratch, write_folder, CheckingSink};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let kind = if pick & 1 == 0 { ImportKind::ItemsCsv } else { ImportKind::InteractionsCsv };
    write_folder(scratch(), &[("input.csv", Some(body))]);
    let path = scratch().join("input.csv");
    let mut sink = CheckingSink::new(false);
    let result = import::parse(kind, &path, &ImportOptions::default(), &mut sink);
    check_outcome(result, &[path], false);
});
