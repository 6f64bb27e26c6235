//! `cargo xtask bench [--sqlite] [--duration SECS] [--connections N] [--rounds N]
//! [--only telemetry]`: builds the server and the benchmark (the `production` profile, as
//! deployed), then runs `taproom-bench`, which writes `target/bench/report.md` and
//! `target/bench/report.csv`.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

pub fn run(root: &Path, extra: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "--profile",
            "production",
            "--locked",
            "-p",
            "taproom-server",
            "-p",
            "taproom-bench",
            // --bin applies to every package named, so each binary is named.
            "--bin",
            "server",
            "--bin",
            "taproom-bench",
            "--bin",
            "baseline",
        ])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(built.success(), "production build failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let built = target.join("production");
    let status = Command::new(built.join("taproom-bench"))
        .current_dir(root)
        .arg("--server")
        .arg(built.join("server"))
        .arg("--baseline")
        .arg(built.join("baseline"))
        .arg("--out")
        .arg(root.join("target/bench"))
        .args(extra)
        .status()
        .context("running taproom-bench")?;
    anyhow::ensure!(status.success(), "the benchmark failed");
    Ok(())
}
