//! Inputs the fuzzers found interesting (fuzz/corpus and fuzz/artifacts), replayed
//! through the socket-free request path on every `cargo test`.
