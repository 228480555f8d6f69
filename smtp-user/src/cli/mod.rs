//! Command line: one module per subcommand.

pub mod run;
