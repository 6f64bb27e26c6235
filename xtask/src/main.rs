use anyhow::{bail, Result};
use xtask::{compat, finish, generate_all, services, workspace_root, Generated};

const USAGE: &str = "usage: cargo xtask <command>

  gen     regenerate openapi/bundled/, client/src/generated/, server/src/<svc>/api.rs
          and the web client's TypeScript SDK (web/src/api/generated/, needs node and
          `npm ci` in web/) from openapi/*.yaml
  check   fail if a spec is invalid, a generated file is stale, what a service serves
          differs from its YAML, a spec breaks its release without a new major version,
          or lacks descriptions (operations, parameters, properties) or valid examples
  docs    static API reference pages for every service, readable offline, in
          $CARGO_TARGET_DIR/api-docs or target/api-docs (`--out DIR` elsewhere)
  release snapshot every service's bundled spec as released (openapi/released/), after
          `check`'s compatibility rules and a changed info.version for any changed spec
  new-service <name> --port <port>
          scaffold a working service (spec, migration, server/src/<name>/, contract
          tests, deploy entries, its line in server/src/lib.rs), then `gen`
  bench   build release binaries and measure the tasks service against a framework-free
          baseline (PostgreSQL; --sqlite, --duration SECS, --connections N, --rounds N,
          --only telemetry|baseline, --operation NAME with --only); writes
          target/bench/report.md and report.csv";

fn main() -> Result<()> {
    let root = workspace_root()?;
    let services = services(&root)?;
    match std::env::args().nth(1).as_deref() {
        Some("gen") => gen(&root),
        Some("new-service") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            let (name, port) = match args.as_slice() {
                [name, flag, port] if flag == "--port" => (name, port),
                [flag, port, name] if flag == "--port" => (name, port),
                _ => bail!("usage: cargo xtask new-service <name> --port <port>"),
            };
            let port: u16 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("--port {port:?} is not a port number"))?;
            for path in xtask::scaffold::new_service(&root, name, port)? {
                println!("wrote {}", path.display());
            }
            gen(&root)?;
            println!(
                "\nThe {name} service is ready: `cargo test -p taproom-tests --test {name}` runs its contract tests, \
                 `cargo run -- {name}` (or `all`) serves it on port {port} with its docs at /docs.\n\
                 Change openapi/{name}.yaml, run `cargo xtask gen`, and follow the compiler."
            );
            Ok(())
        }
        Some("check") => {
            // Invalid specs fail here, while generating.
            let mut failures = xtask::stale_files(&root)?;
            if !failures.is_empty() {
                failures.push("run `cargo xtask gen` and commit the result".into());
            } else {
                for service in &services {
                    let served = xtask::served_openapi(&root, service)?;
                    for d in xtask::drift(&root, service, &served)? {
                        failures.push(format!(
                            "{service}: served document drifts from the YAML: {d}"
                        ));
                    }
                }
            }
            for service in &services {
                failures.extend(compatibility(&root, service)?);
                let bundled = xtask::bundle::bundle_service(&root.join("openapi"), service)?;
                for p in xtask::quality::problems(&bundled) {
                    failures.push(format!("{service}: not publishable: {p}"));
                }
            }
            if failures.is_empty() {
                println!("xtask check: specs valid, generated code fresh, served documents match the YAML, no unannounced breaking changes, specs documented with valid examples ({} services)", services.len());
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
        Some("release") => release(&root),
        Some("docs") => {
            let out = match std::env::args().nth(2).as_deref() {
                Some("--out") => std::env::args()
                    .nth(3)
                    .map(std::path::PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!("--out needs a directory"))?,
                None => xtask::docs::default_out_dir(&root),
                Some(other) => bail!("unexpected argument {other:?}\n{USAGE}"),
            };
            let index = xtask::docs::build(&root, &out)?;
            println!("wrote {}", index.display());
            Ok(())
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// `check`'s verdict on one service against its release: failures, and a note when a new
/// major version allows breaking changes.
fn compatibility(root: &std::path::Path, service: &str) -> Result<Vec<String>> {
    let Some(v) = compat::verdict(root, service)? else {
        println!(
            "{service}: never released (no {}/{service}.yaml), nothing to compare",
            compat::RELEASED_DIR
        );
        return Ok(vec![]);
    };
    if v.allowed()? {
        if !v.breaking.is_empty() {
            println!(
                "{service}: {} breaking change(s) since {}, allowed by the new major version {}",
                v.breaking.len(),
                v.released_version,
                v.version
            );
        }
        return Ok(vec![]);
    }
    let mut out: Vec<String> = v
        .breaking
        .iter()
        .map(|b| {
            format!(
                "{service}: breaking change since release {}: {b}",
                v.released_version
            )
        })
        .collect();
    out.push(format!(
        "{service}: keep the change compatible, or bump info.version's major in openapi/{service}.yaml (now {})",
        v.version
    ));
    Ok(out)
}

/// Regenerates every generated file from the specs, writing only what changed.
fn gen(root: &std::path::Path) -> Result<()> {
    for Generated { path, content } in generate_all(root)? {
        let content = finish(&path, content)?;
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::create_dir_all(path.parent().expect("generated files live in a directory"))?;
            std::fs::write(&path, content)?;
            println!(
                "wrote {}",
                path.strip_prefix(root).unwrap_or(&path).display()
            );
        }
    }
    Ok(())
}

/// Writes `openapi/released/<service>.yaml` for every service from its current spec.
fn release(root: &std::path::Path) -> Result<()> {
    let services = services(root)?;
    let mut refused = Vec::new();
    for service in &services {
        refused.extend(compatibility(root, service)?);
    }
    let spec_dir = root.join("openapi");
    let mut snapshots = Vec::new();
    for service in &services {
        let bundled = xtask::bundle::bundle_service(&spec_dir, service)?;
        xtask::validate_spec(service, &bundled)?;
        let path = compat::snapshot_path(root, service);
        if let Ok(released) = xtask::bundle::load_yaml(&path) {
            // Two different documents must never share a version number.
            if released != bundled && compat::version(&released)? == compat::version(&bundled)? {
                refused.push(format!(
                    "{service}: the spec changed since release {} but info.version did not",
                    compat::version(&released)?
                ));
            }
        }
        snapshots.push((path, compat::snapshot_yaml(service, &bundled)?));
    }
    if !refused.is_empty() {
        for r in &refused {
            eprintln!("{r}");
        }
        bail!("nothing released ({} problems)", refused.len());
    }
    for (path, content) in snapshots {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::create_dir_all(path.parent().expect("snapshots live in a directory"))?;
            std::fs::write(&path, content)?;
            println!(
                "wrote {}",
                path.strip_prefix(root).unwrap_or(&path).display()
            );
        }
    }
    Ok(())
}
