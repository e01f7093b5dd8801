//! The README's first command, through the real binary: `weir run nexmark-q5 --events
//! 1000000 --output q5.jsonl` equals the independent computation of q5.

use weir_nexmark::generator::{GeneratorConfig, event};
use weir_nexmark::queries::Q5Row;
use weir_nexmark::reference;

#[test]
fn readme_q5_command_through_the_binary() {
    let dir = std::env::temp_dir().join(format!("weir-cli-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("q5.jsonl");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "nexmark-q5", "--events", "1000000", "--quiet", "--output"])
        .arg(&out)
        .status()
        .expect("weir starts");
    assert!(status.success());
    let config = GeneratorConfig::default();
    let events: Vec<_> = (0..1_000_000).map(|i| event(&config, i)).collect();
    let mut want = reference::q5(&events);
    want.sort();
    let text = std::fs::read_to_string(&out).expect("output written");
    let mut got: Vec<Q5Row> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    got.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "q5 rows differ from the reference");
    let _ = std::fs::remove_dir_all(&dir);
}
