//! Policy text: pest grammar → AST with spans → diagnostics → IR.

pub mod ast;
pub mod diag;
pub mod parse;
