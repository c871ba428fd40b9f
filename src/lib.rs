//! nodewright: decides which EC2 instances a Kubernetes cluster should launch
//! for its pending pods, driven by policy files, and launches them.
//!
//! One module per stage of the data flow (see DESIGN.md):
//! text → AST (`policy`) → IR (`ir`) → plan (`solver`) → launch (`cloud`).

// pest is built without `std` (no stack guard on the parse hot path); its generated parser names `alloc`.
extern crate alloc;

pub mod catalog;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod import;
pub mod ir;
pub mod policy;
pub mod reload;
pub mod scoring;
pub mod solver;
// Synthetic inputs (Karpenter's benchmark catalog and workloads) for `nodewright bench`,
// benches/ and the tests. Not part of the planner: hidden from the docs, and it depends
// only on the data layers (catalog, ir, workload), so anything above may use it.
#[doc(hidden)]
pub mod synth;
pub mod workload;
