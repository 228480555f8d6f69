//! Command line: one module per subcommand.

pub mod content;
pub mod ctl;
pub mod replay;
pub mod run;
