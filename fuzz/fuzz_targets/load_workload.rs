//! Any bytes into the workload loader: it must return a workload or an
//! error, never panic, hang or run out of memory, and every error must
//! render (miette used to panic on errors past column 65,535).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodewright::workload::{self, LoadOptions};

fuzz_target!(|data: &[u8]| {
    // A low ceiling on pods, so that a mutated `replicas` does not spend
    // the run making a million pod names.
    let opts = LoadOptions {
        max_pods: 10_000,
        ..LoadOptions::default()
    };
    if let Err(err) = workload::load_bytes("fuzz.yaml", data, &opts) {
        let mut out = String::new();
        miette::GraphicalReportHandler::new()
            .render_report(&mut out, &err)
            .expect("the error renders");
    }
});
