//! Command line: one module per subcommand.

pub mod ctl;
pub mod replay;
pub mod run;
