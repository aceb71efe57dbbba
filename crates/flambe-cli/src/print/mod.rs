//! Everything the CLI prints of an operation's result, apart from live
//! progress (`progress`) and errors (`render`).

pub mod cluster;
pub mod plan;
pub mod results;
