//! `cargo xtask bench [--sqlite] [--duration SECS] [--connections N] [--rounds N]
//! [--only telemetry|baseline [--operation NAME]]`: builds the server and the benchmark
//! (the `production` profile, as deployed), then runs `taproom-bench`, which writes
//! `target/bench/report.md` and `target/bench/report.csv`.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// The cargo profile benchmarked: the one the Dockerfile and the Lambda build deploy.
const PROFILE: &str = "production";

pub fn run(root: &Path, extra: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "--profile",
            PROFILE,
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
    anyhow::ensure!(built.success(), "{PROFILE} build failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binaries = target.join(PROFILE);
    let status = Command::new(binaries.join("taproom-bench"))
        .current_dir(root)
        .arg("--server")
        .arg(binaries.join("server"))
        .arg("--baseline")
        .arg(binaries.join("baseline"))
        .arg("--out")
        .arg(root.join("target/bench"))
        .args(extra)
        .status()
        .context("running taproom-bench")?;
    anyhow::ensure!(status.success(), "the benchmark failed");
    Ok(())
}
