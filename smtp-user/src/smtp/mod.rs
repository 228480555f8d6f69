//! SMTP dissector: grammar, state machine and the events it produces.
