//! Launching on EC2 and the state shared with the solver.

pub mod unavailable;
