//! Any bytes: parsing, compiling and formatting must never panic, and
//! whatever parses must format to text that parses back to the same AST.
//! The same text as a lone requirement expression (`policy::parse_requirement`,
//! the `catalog list --require` entry) must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodewright::policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(d) = policy::parse_requirement("fuzz", text) {
        let _ = d.render(100);
    }
    match policy::parse("fuzz.policy", text) {
        Ok(file) => {
            let formatted = policy::format(&file);
            let again = policy::parse("fuzz.policy", &formatted).expect("formatted text parses");
            assert_eq!(file, again);
            let _ = policy::compile(&[file]);
        }
        Err(diags) => {
            let _ = diags.render(100);
            let _ = diags.to_json();
        }
    }
});
