//! The Goodreads export importer: the input is the export's CSV.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrrec_core::{import, ImportKind, ImportOptions};
use mrrec_fuzz::{check_outcome, scratch, write_folder, CheckingSink};

fuzz_target!(|data: &[u8]| {
    write_folder(scratch(), &[("goodreads_library_export.csv", Some(data))]);
    let path = scratch().join("goodreads_library_export.csv");
    let opts = ImportOptions { user: Some("fuzz".into()), ..Default::default() };
    let mut sink = CheckingSink::new(false);
    let result = import::parse(ImportKind::Goodreads, &path, &opts, &mut sink);
    check_outcome(result, &[path], false);
});
