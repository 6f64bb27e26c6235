//! `cargo xtask new-service` on a copy of the workspace: what it refuses (writing
//! nothing), and that what it makes passes `cargo xtask check`, clippy and its own
//! contract tests on both databases right away.

mod common;

use common::*;
use std::path::Path;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn new_service(dir: &Path, name: &str, port: &str) -> std::process::Output {
    cargo(
        dir,
        &target_dir(),
        &["xtask", "new-service", name, "--port", port],
    )
}

#[test]
fn bad_names_taken_ports_and_existing_services_are_refused_without_writing() {
    let (_tmp, copy) = copy_of_workspace();
    let before = contents(&copy);
    for (name, port, why) in [
        ("Notes", "5010", "is not a service name"),
        ("my-notes", "5010", "is not a service name"),
        ("gateway", "5010", "is reserved"),
        ("tasks", "5010", "exists already"),
        ("notes", "5004", "taken by the tasks service"),
        ("notes", "5000", "the gateway's"),
        ("notes", "80", "privileged"),
        ("notes", "http", "not a port number"),
    ] {
        let output = new_service(&copy, name, port);
        assert!(!output.status.success(), "{name} on {port} was accepted");
        assert!(
            stderr(&output).contains(why),
            "{name} on {port}: {}",
            stderr(&output)
        );
        assert_eq!(
            changed(&before, &contents(&copy)),
            Vec::<std::path::PathBuf>::new(),
            "{name} on {port} wrote files"
        );
    }
}

/// Slow (it builds the copy's server and tests), and the one proof that a scaffolded
/// service works end to end.
#[test]
fn a_new_service_passes_check_clippy_and_its_contract_tests() {
    let (_tmp, copy) = copy_of_workspace();
    let before = contents(&copy);
    let output = new_service(&copy, "notes", "5099");
    assert!(output.status.success(), "{}", stderr(&output));

    // Its own folders, the generated files, and (outside them) the list and the deploy files.
    let outside: Vec<String> = changed(&before, &contents(&copy))
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| {
            !p.starts_with("server/src/notes/")
                && !p.starts_with("migrations/notes/")
                && p != "openapi/notes.yaml"
                && p != "tests/tests/notes.rs"
                && !p.starts_with("openapi/bundled/")
                && !p.starts_with("client/src/generated/")
        })
        .collect();
    assert_eq!(
        outside,
        [
            "deploy/compose.yaml",
            "deploy/k8s/config.yaml",
            "deploy/k8s/ingress.yaml",
            "deploy/k8s/kustomization.yaml",
            "deploy/k8s/notes.yaml",
            "deploy/nginx.conf",
            "deploy/postgres/roles.sh",
            "deploy/prometheus/prometheus.yml",
            "deploy/upstreams.compose.conf",
            "deploy/upstreams.conf",
            "server/src/lib.rs",
        ]
    );
    let lib = std::fs::read_to_string(copy.join("server/src/lib.rs")).unwrap();
    assert!(lib
        .contains("services!(users, beers, promotions, orders, tasks, scores, exercises, notes);"));

    let check = cargo_xtask(&copy, &target_dir(), "check");
    assert!(check.status.success(), "xtask check: {}", stderr(&check));
    let clippy = cargo(
        &copy,
        &target_dir(),
        &[
            "clippy",
            "-p",
            "taproom-server",
            "-p",
            "taproom-tests",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );
    assert!(clippy.status.success(), "clippy: {}", stderr(&clippy));
    let tests = cargo(
        &copy,
        &target_dir(),
        &["test", "-p", "taproom-tests", "--test", "notes"],
    );
    let out = String::from_utf8_lossy(&tests.stdout).into_owned();
    assert!(tests.status.success(), "{out}\n{}", stderr(&tests));
    // Three contract tests, each on SQLite and PostgreSQL.
    assert!(out.contains("test result: ok. 6 passed"), "{out}");
    // And the deploy files still route and run every service, the new one included.
    let deploy = cargo(
        &copy,
        &target_dir(),
        &["test", "-p", "taproom-tests", "--test", "deploy"],
    );
    assert!(
        deploy.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&deploy.stdout),
        stderr(&deploy)
    );
}
