//! `weir bench state` without the CLI crate (which pulls in SQL):
//! `cargo run -p weir --release --example bench_state -- <megabytes> <dir> [memory|rocksdb]`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mb = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir = args.get(2).cloned().unwrap_or_else(|| std::env::temp_dir().join("weir-bench-state").display().to_string());
    let backend = match args.get(3).map(String::as_str) {
        Some("memory") => weir::state::StateBackend::Memory,
        _ => weir::state::StateBackend::RocksDb,
    };
    if let Err(e) = weir::cli::bench::state::run(mb, &dir, backend) {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
