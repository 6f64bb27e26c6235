//! `cargo xtask new-service <name> --port <port>`: a working service from templates
//! (`xtask/templates/service/`): a spec with one resource the caller owns (list, create,
//! get, update, delete), its migration, `server/src/<name>/` implementing the generated
//! trait, contract tests on both databases, the deploy entries, and the one line in
//! `server/src/lib.rs`'s service list. Everything is checked before anything is written.

use anyhow::{bail, Context, Result};
use heck::ToUpperCamelCase;
use std::path::{Path, PathBuf};

/// Names that would clash with a command, a shared file or a module of the runtime.
const RESERVED: &[&str] = &[
    "all",
    "admin",
    "migrate",
    "healthcheck",
    "mock",
    "help",
    "common",
    "gateway",
    "bundled",
    "released",
    "runtime",
    "generated",
    "services",
    "test",
    "tests",
    "self",
    "super",
    "crate",
    "mod",
    "type",
    "fn",
    "impl",
    "use",
    "pub",
    "async",
    "await",
    "loop",
    "match",
    "move",
    "static",
    "struct",
    "trait",
    "where",
    "enum",
    "const",
    "let",
    "ref",
    "box",
    "dyn",
];

/// The gateway's default port.
const GATEWAY_PORT: u16 = 5000;

/// One file to write: new, or an existing one with its new content.
struct Change {
    path: PathBuf,
    content: String,
}

/// The item a service's resource is called: `exercises` -> `exercise`, `stories` ->
/// `story`, `classes` -> `class`; a name that is not a plural stays as it is.
pub fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if let Some(stem) = name.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    match name.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && stem.len() >= 2 => stem.to_string(),
        _ => name.to_string(),
    }
}

/// Why `name` cannot be a service's name, if it cannot.
pub fn check_name(name: &str) -> Result<()> {
    let shape = name.len() >= 2
        && name.len() <= 30
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !shape {
        bail!("{name:?} is not a service name: use 2 to 30 lower-case letters and digits, starting with a letter (it becomes a Rust module, a URL path, a database name and <NAME>_PORT)");
    }
    if RESERVED.contains(&name) {
        bail!("{name:?} is reserved (a command, a shared file or a Rust keyword); choose another name");
    }
    Ok(())
}

/// The default ports of the existing services, from their `ServiceDef`s.
fn taken_ports(root: &Path) -> Result<Vec<(String, u16)>> {
    let mut ports = Vec::new();
    for service in crate::services(root)? {
        let module = root.join("server/src").join(&service).join("mod.rs");
        let Ok(text) = std::fs::read_to_string(&module) else {
            continue;
        };
        if let Some(port) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("port: "))
            .and_then(|p| p.trim_end_matches(',').parse().ok())
        {
            ports.push((service, port));
        }
    }
    Ok(ports)
}

fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

fn read(root: &Path, path: &str) -> Result<String> {
    std::fs::read_to_string(root.join(path)).with_context(|| format!("reading {path}"))
}

/// `text` with `insert` (whole lines) placed after the last line for which `after`
/// holds; an error naming `file` when there is none.
fn insert_after(
    text: &str,
    file: &str,
    insert: &str,
    after: impl Fn(&str) -> bool,
) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| after(l))
        .with_context(|| format!("{file}: cannot find where the new service goes"))?;
    let mut out: Vec<String> = lines[..=at].iter().map(|l| l.to_string()).collect();
    out.push(insert.trim_end_matches('\n').to_string());
    out.extend(lines[at + 1..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// Every file the scaffold writes for `name` on `port`, or why it must not.
fn plan(root: &Path, templates: &Path, name: &str, port: u16) -> Result<Vec<Change>> {
    check_name(name)?;
    if (crate::services(root)?).iter().any(|s| s == name) {
        bail!("a service named {name:?} exists already (openapi/{name}.yaml)");
    }
    for existing in [
        format!("server/src/{name}"),
        format!("migrations/{name}"),
        format!("tests/tests/{name}.rs"),
        format!("deploy/k8s/{name}.yaml"),
    ] {
        if root.join(&existing).exists() {
            bail!("{existing} exists already; remove it or choose another name");
        }
    }
    if port < 1024 {
        bail!("port {port} is privileged; choose one from 1024 to 65535");
    }
    if port == GATEWAY_PORT {
        bail!("port {port} is the gateway's; choose another");
    }
    if let Some((other, _)) = taken_ports(root)?.into_iter().find(|(_, p)| *p == port) {
        bail!("port {port} is taken by the {other} service; choose another");
    }
    let item = singular(name);
    let vars = [
        ("service", name.to_string()),
        ("Service", name.to_upper_camel_case()),
        ("item", item.clone()),
        ("Item", item.to_upper_camel_case()),
        ("port", port.to_string()),
    ];
    let template = |file: &str| -> Result<String> {
        let text = std::fs::read_to_string(templates.join(file))
            .with_context(|| format!("reading template {file}"))?;
        Ok(render(&text, &vars))
    };
    let new = |path: String, content: String| Change {
        path: root.join(path),
        content,
    };
    let edit = |path: &str, content: String| new(path.to_string(), content);
    let mut changes = vec![
        new(format!("openapi/{name}.yaml"), template("spec.yaml")?),
        new(
            format!("migrations/{name}/0001_{name}.sql"),
            template("migration.sql")?,
        ),
        new(
            format!("server/src/{name}/mod.rs"),
            template("mod.rs.tmpl")?,
        ),
        new(
            format!("server/src/{name}/handlers.rs"),
            template("handlers.rs.tmpl")?,
        ),
        new(
            format!("server/src/{name}/store.rs"),
            template("store.rs.tmpl")?,
        ),
        new(format!("tests/tests/{name}.rs"), template("test.rs.tmpl")?),
        new(format!("deploy/k8s/{name}.yaml"), template("k8s.yaml")?),
    ];

    // The one line that makes it a service: its name in the list.
    let lib = read(root, "server/src/lib.rs")?;
    let list_start = lib
        .find("services!(")
        .context("server/src/lib.rs: no `services!(...)` list")?;
    let list_end = list_start
        + lib[list_start..]
            .find(");")
            .context("server/src/lib.rs: the `services!(` list is not closed")?;
    let listed = lib[..list_end].trim_end().trim_end_matches(',');
    let lib = format!("{listed}, {name}{}", &lib[list_end..]);
    changes.push(edit("server/src/lib.rs", lib));

    // Deployment: routes, upstreams, a container, a Deployment.
    let nginx = read(root, "deploy/nginx.conf")?;
    let route = format!("        location /v1/{name} {{ proxy_pass http://{name}; }}");
    changes.push(edit(
        "deploy/nginx.conf",
        insert_after(&nginx, "deploy/nginx.conf", &route, |l| {
            l.trim_start().starts_with("location /v1/")
        })?,
    ));
    for (file, host) in [
        ("deploy/upstreams.conf", "127.0.0.1".to_string()),
        ("deploy/upstreams.compose.conf", name.to_string()),
    ] {
        let text = read(root, file)?;
        let line =
            format!("upstream {name:<10} {{ server {host}:{port} max_fails=1 fail_timeout=5s; }}");
        changes.push(edit(
            file,
            insert_after(&text, file, &line, |l| l.starts_with("upstream "))?,
        ));
    }
    let compose = read(root, "deploy/compose.yaml")?;
    // Its own database role (deploy/postgres/roles.sh): a password for postgres to
    // create it with, and the service's URL as that role.
    let env = name.to_uppercase();
    let password =
        format!("      {env}_DB_PASSWORD: ${{{env}_DB_PASSWORD:?set {env}_DB_PASSWORD}}");
    let compose = insert_after(&compose, "deploy/compose.yaml", &password, |l| {
        l.trim_start().contains("_DB_PASSWORD: ${")
    })?;
    // Where the other services reach it (`<NAME>_URL`), beside the others' URLs.
    let is_peer_url = |l: &str| {
        let l = l.trim_start();
        l.split_once("_URL: http://")
            .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase()))
    };
    let compose = insert_after(
        &compose,
        "deploy/compose.yaml",
        &format!("    {env}_URL: http://{name}:{port}"),
        is_peer_url,
    )?;
    // After the last service, separated by a blank line as the others are.
    let block = format!(
        "\n  {name}:\n    <<: *service\n    command: [\"{name}\"]\n    environment:\n      <<: *environment\n      {env}_DATABASE_URL: postgres://{name}:${{{env}_DB_PASSWORD:?set {env}_DB_PASSWORD}}@postgres:5432/taproom_{name}\n    healthcheck:\n      test: [\"CMD\", \"server\", \"healthcheck\", \"{name}\"]\n      interval: 10s\n      timeout: 3s\n      retries: 3\n      start_period: 10s\n"
    );
    let compose = insert_after(&compose, "deploy/compose.yaml", &block, |l| {
        l.trim() == "start_period: 10s"
    })?;
    let dependency = format!("      {name}:\n        condition: service_healthy");
    let compose = insert_after(&compose, "deploy/compose.yaml", &dependency, |l| {
        l.trim() == "condition: service_healthy"
    })?;
    changes.push(edit("deploy/compose.yaml", compose));
    // Compose's Prometheus scrapes it (Kubernetes finds it by its pod's annotations).
    let prometheus = read(root, "deploy/prometheus/prometheus.yml")?;
    let target =
        format!("      - targets: [\"{name}:{port}\"]\n        labels: {{service: {name}}}");
    changes.push(edit(
        "deploy/prometheus/prometheus.yml",
        insert_after(
            &prometheus,
            "deploy/prometheus/prometheus.yml",
            &target,
            |l| l.trim_start().starts_with("labels: {service: "),
        )?,
    ));
    let roles = read(root, "deploy/postgres/roles.sh")?;
    let list = roles
        .lines()
        .find(|l| l.starts_with("for service in ") && l.ends_with("; do"))
        .context("deploy/postgres/roles.sh: no `for service in ...; do` list")?;
    let listed = format!(
        "{}; do",
        list.trim_end_matches("; do").trim_end().to_string() + " " + name
    );
    changes.push(edit(
        "deploy/postgres/roles.sh",
        roles.replacen(list, &listed, 1),
    ));
    let config = read(root, "deploy/k8s/config.yaml")?;
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-database\n  namespace: taproom\ntype: Opaque\nstringData:\n  {env}_DATABASE_URL: postgres://{name}:change-me@postgres:5432/taproom_{name}\n"
    );
    let config = insert_after(
        &config,
        "deploy/k8s/config.yaml",
        &format!("  {env}_URL: http://{name}:{port}"),
        is_peer_url,
    )?;
    changes.push(edit(
        "deploy/k8s/config.yaml",
        format!("{}\n{secret}", config.trim_end()),
    ));
    let kustomization = read(root, "deploy/k8s/kustomization.yaml")?;
    changes.push(edit(
        "deploy/k8s/kustomization.yaml",
        insert_after(
            &kustomization,
            "deploy/k8s/kustomization.yaml",
            &format!("  - {name}.yaml"),
            |l| l.starts_with("  - ") && l.ends_with(".yaml") && !l.contains("ingress"),
        )?,
    ));
    let ingress = read(root, "deploy/k8s/ingress.yaml")?;
    let path = format!(
        "          - {{ path: /v1/{name}, pathType: Prefix, backend: {{ service: {{ name: {name}, port: {{ name: http }} }} }} }}"
    );
    changes.push(edit(
        "deploy/k8s/ingress.yaml",
        insert_after(&ingress, "deploy/k8s/ingress.yaml", &path, |l| {
            l.trim_start().starts_with("- { path: /v1/")
        })?,
    ));
    Ok(changes)
}

/// Writes the new service (nothing at all when any check fails) and returns the files
/// written, relative to `root`.
pub fn new_service(root: &Path, name: &str, port: u16) -> Result<Vec<PathBuf>> {
    let templates = root.join("xtask/templates/service");
    let changes = plan(root, &templates, name, port)?;
    let mut written = Vec::new();
    for change in &changes {
        let result = std::fs::create_dir_all(change.path.parent().expect("a file in a folder"))
            .and_then(|_| std::fs::write(&change.path, &change.content));
        if let Err(e) = result {
            bail!(
                "writing {}: {e} (files written so far: {written:?})",
                change.path.display()
            );
        }
        written.push(
            change
                .path
                .strip_prefix(root)
                .unwrap_or(&change.path)
                .to_path_buf(),
        );
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_become_items() {
        assert_eq!(singular("exercises"), "exercise");
        assert_eq!(singular("scores"), "score");
        assert_eq!(singular("stories"), "story");
        assert_eq!(singular("classes"), "class");
        assert_eq!(singular("inventory"), "inventory");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("notes").is_ok());
        for bad in [
            "", "x", "Notes", "my-notes", "my_notes", "9lives", "all", "gateway", "type",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_go_after_the_last_match() {
        let text = "a1\nb\na2\nc\n";
        assert_eq!(
            insert_after(text, "f", "new", |l| l.starts_with('a')).unwrap(),
            "a1\nb\na2\nnew\nc\n"
        );
        assert!(insert_after(text, "f", "new", |l| l == "zzz").is_err());
    }
}
