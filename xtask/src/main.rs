use anyhow::{bail, Result};
use xtask::{finish, generate_all, workspace_root, Generated, SERVICES};

const USAGE: &str = "usage: cargo xtask <command>

  gen     regenerate openapi/bundled/, client/src/generated/ and server/src/<svc>/api.rs
          from openapi/*.yaml
  check   fail if a spec is invalid, a generated file is stale, or what a service
          serves differs from its YAML
  bench   build release binaries and measure the tasks service against a framework-free
          baseline (PostgreSQL; --sqlite, --duration SECS, --connections N); writes
          target/bench/report.md and report.csv";

fn main() -> Result<()> {
    let root = workspace_root();
    match std::env::args().nth(1).as_deref() {
        Some("gen") => {
            for Generated { path, content } in generate_all(&root)? {
                let content = finish(&path, content)?;
                if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                    std::fs::create_dir_all(
                        path.parent().expect("generated files live in a directory"),
                    )?;
                    std::fs::write(&path, content)?;
                    println!(
                        "wrote {}",
                        path.strip_prefix(&root).unwrap_or(&path).display()
                    );
                }
            }
            Ok(())
        }
        Some("check") => {
            // Invalid specs fail here, while generating.
            let mut failures = xtask::stale_files(&root)?;
            if !failures.is_empty() {
                failures.push("run `cargo xtask gen` and commit the result".into());
            } else {
                for service in SERVICES {
                    let served = xtask::served_openapi(&root, service)?;
                    for d in xtask::drift(&root, service, &served)? {
                        failures.push(format!(
                            "{service}: served document drifts from the YAML: {d}"
                        ));
                    }
                }
            }
            if failures.is_empty() {
                println!("xtask check: specs valid, generated code fresh, served documents match the YAML ({} services)", SERVICES.len());
                Ok(())
            } else {
                for f in &failures {
                    eprintln!("{f}");
                }
                bail!("xtask check failed ({} problems)", failures.len())
            }
        }
        Some("bench") => {
            let extra: Vec<String> = std::env::args().skip(2).collect();
            xtask::bench::run(&root, &extra)
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
