//! Flow table and TCP reassembly.
