//! The `weir-operator` binary as a user runs it, without a cluster.

use std::process::Command;

/// `logFormat: text` writes plain text when the output is a file or a pipe (the chart's
/// container log): no ANSI colour codes.
#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-operator"))
        .args(["run", "--log-format", "text", "--no-leader-election", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run weir-operator");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "no cluster: it must stop with an error");
    assert!(text.contains("weir-operator stopped"), "{text}");
    assert!(text.contains("/nonexistent/kubeconfig"), "the error names the kubeconfig it could not read: {text}");
    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a piped log: {text:?}");
}

#[test]
fn crd_subcommand_prints_the_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-operator")).arg("crd").output().expect("run weir-operator crd");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("name: streamjobs.weir.dev"));
}
