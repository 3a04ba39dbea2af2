//! ferrite's criterion benches live in this package's `[[bench]]` targets (`cargo bench -p
//! ferrite-benches`); this library is empty.
