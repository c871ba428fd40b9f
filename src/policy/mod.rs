//! Policy text: pest grammar → AST with spans → diagnostics → IR.

pub mod ast;
