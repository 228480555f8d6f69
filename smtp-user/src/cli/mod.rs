//! Command line: one module per subcommand.

pub mod config;
pub mod content;
pub mod ctl;
pub mod generate;
pub mod replay;
pub mod run;
