//! Command line: one module per subcommand.

pub mod replay;
pub mod run;
