//! Application-layer helpers that read payload and announce expectations.
