//! The JSON Lines importers (`items-jsonl`, `interactions-jsonl`): the first byte picks which,
//! the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrrec_core::{import, ImportKind, ImportOptions};
use mrrec_fuzz::{check_outcome, scratch, write_folder, CheckingSink};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let kind = if pick & 1 == 0 { ImportKind::ItemsJsonl } else { ImportKind::InteractionsJsonl };
    write_folder(scratch(), &[("input.jsonl", Some(body))]);
    let path = scratch().join("input.jsonl");
    let mut sink = CheckingSink::new(false);
    let result = import::parse(kind, &path, &ImportOptions::default(), &mut sink);
    check_outcome(result, &[path], false);
});
