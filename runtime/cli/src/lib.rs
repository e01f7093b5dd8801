//! The `weir` command line as a library: what the binary, its tests and the e2e
//! tests share. The engine crate (`weir`) knows built-in jobs and job files; this
//! crate adds what the engine must not depend on, starting with SQL (`weir-sql`).

pub mod job;
pub mod shell;
