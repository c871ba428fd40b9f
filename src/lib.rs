//! nodewright: decides which EC2 instances a Kubernetes cluster should launch
//! for its pending pods, driven by policy files, and launches them.
//!
//! One module per stage of the data flow (see DESIGN.md):
//! text → AST (`policy`) → IR (`ir`) → plan (`solver`) → launch (`cloud`).
//!
//! # Layers
//!
//! The modules form layers that point one way: a module uses only modules of a lower
//! layer, never a sibling or anything above it. `tests/layers.rs` walks `src/` and fails on
//! an upward `crate::` path, so the order below is enforced, not just described.
//!
//! | layer | modules | one job each |
//! |---|---|---|
//! | 0 | `ir` | the compiled forms every stage shares; depends on nothing |
//! | 1 | `policy`, `catalog`, `workload` | policy text → AST → IR; the instance-type data model and the embedded catalog; Kubernetes objects → pod classes |
//! | 2 | `import`, `synth` | Karpenter YAML → the policy AST; synthetic benchmark inputs (not product code) |
//! | 3 | `scoring` | the rhai sandbox that scores candidates |
//! | 4 | `solver`, `reload` | the plan, a pure function of its inputs; watching and swapping policy versions |
//! | 5 | `cloud`, `disrupt` | EC2 I/O: live discovery, launch templates, CreateFleet; pure disruption decisions (budgets, drift, expiry, consolidation) |
//! | 6 | `controller` | the in-cluster loop: observe, decide (pure steps), act |
//! | 7 | `cli` | the `nodewright` command, kept thin |
//!
//! Availability and prices reach the solver as data, never through a cache it reads
//! during a solve, so a plan is reproducible from its inputs alone.

// pest is built without `std` (no stack guard on the parse hot path); its generated parser names `alloc`.
extern crate alloc;

pub mod catalog;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod disrupt;
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
