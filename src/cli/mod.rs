//! Subcommand implementations. `main.rs` only parses and dispatches; each
//! command moves data between files, the pure stages and the terminal.
//!
//! Exit codes: 0 success, 1 findings (errors in `check`, unformatted files,
//! unschedulable pods where documented), 2 usage or input errors.

pub mod bench;
pub mod catalog;
pub mod check;
pub mod controller;
pub mod ec2;
pub mod explain;
pub mod fmt;
pub mod import;
pub mod inputs;
pub mod plan;
