//! `cargo xtask check` must catch each kind of drift. Every test works on a temporary
//! copy of the specs and generated files (or of the whole workspace), so the real tree is
//! never touched.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xtask::{compat, drift, generate_all, served_openapi, services, stale_files};

#[test]
fn a_fresh_copy_is_not_stale() {
    let (_tmp, root) = copy_of_tree();
    assert_eq!(stale_files(&root).unwrap(), Vec::<String>::new());
}

#[test]
fn a_spec_change_without_gen_is_stale() {
    let (_tmp, root) = copy_of_tree();
    edit(
        &root.join("openapi/users.yaml"),
        "summary: Get a user",
        "summary: Fetch one user",
    );
    let stale = stale_files(&root).unwrap();
    assert!(
        stale
            .iter()
            .any(|s| s.starts_with("server/src/users/api.rs is stale")),
        "{stale:?}"
    );
    assert!(
        stale
            .iter()
            .any(|s| s.starts_with("openapi/bundled/users.yaml is stale")),
        "{stale:?}"
    );
}

#[test]
fn a_hand_edit_of_generated_code_is_stale() {
    let (_tmp, root) = copy_of_tree();
    let client = root.join("client/src/generated/users.rs");
    let text = std::fs::read_to_string(&client).unwrap();
    std::fs::write(&client, text + "\n// hand edit\n").unwrap();
    let stale = stale_files(&root).unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].contains("client/src/generated/users.rs"));
}

/// The web client's TypeScript SDK is generated and checked like the Rust client. The
/// generator is an npm package: this needs `npm ci` in web/ (as `.ci/run` does).
#[test]
fn a_spec_change_makes_the_typescript_sdk_stale() {
    let real = workspace_root();
    let node_modules = real.join("web/node_modules");
    assert!(
        node_modules.join("openapi-typescript").is_dir(),
        "run `npm ci` in web/ (node 20 or later) for the TypeScript SDK's generator"
    );
    let (_tmp, root) = copy_of_tree();
    let mut web_files = vec![PathBuf::from("web/scripts/gen-sdk.mjs")];
    for entry in std::fs::read_dir(real.join(xtask::typescript::DIR)).unwrap() {
        web_files.push(Path::new(xtask::typescript::DIR).join(entry.unwrap().file_name()));
    }
    for file in web_files {
        std::fs::create_dir_all(root.join(&file).parent().unwrap()).unwrap();
        std::fs::copy(real.join(&file), root.join(&file)).unwrap();
    }
    std::os::unix::fs::symlink(&node_modules, root.join("web/node_modules")).unwrap();
    assert_eq!(stale_files(&root).unwrap(), Vec::<String>::new());
    edit(
        &root.join("openapi/tasks.yaml"),
        "description: What is to be done.",
        "description: What is to be done, in a few words.",
    );
    let stale = stale_files(&root).unwrap();
    assert!(
        stale
            .iter()
            .any(|s| s.starts_with("web/src/api/generated/tasks.ts is stale")
                && s.contains("in a few words")),
        "{stale:?}"
    );
}

#[test]
fn invalid_specs_are_refused() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "dangling $ref",
            "$ref: \"#/components/schemas/UserPage\"",
            "$ref: \"#/components/schemas/NoSuchThing\"",
        ),
        (
            "duplicate operationId",
            "operationId: delete_user",
            "operationId: get_user",
        ),
        ("not OpenAPI 3.0", "openapi: 3.0.3", "openapi: 2.0"),
        ("broken YAML", "paths:\n", "paths:\n  - [unclosed\n"),
    ];
    for (what, from, to) in cases {
        let (_tmp, root) = copy_of_tree();
        edit(&root.join("openapi/users.yaml"), from, to);
        assert!(generate_all(&root).is_err(), "{what} was accepted");
        assert!(stale_files(&root).is_err(), "check passed despite: {what}");
    }
}

/// Security is part of the contract: an operation that states none, an unknown role, a
/// role without a bearer requirement and scopes where a role belongs are refused.
#[test]
fn every_operation_must_state_a_security_requirement_the_generator_knows() {
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "no security",
            "      operationId: create_user\n      security: []\n",
            "      operationId: create_user\n",
            "states no `security`",
        ),
        (
            "an unknown role",
            "      x-roles: [admin]\n",
            "      x-roles: [brewer]\n",
            "unknown role",
        ),
        (
            "a role on a public operation",
            "      operationId: create_user\n      security: []\n",
            "      operationId: create_user\n      security: []\n      x-roles: [admin]\n",
            "`x-roles` needs",
        ),
    ];
    for (what, from, to, message) in cases {
        let (_tmp, root) = copy_of_tree();
        edit(&root.join("openapi/users.yaml"), from, to);
        let error = format!(
            "{:#}",
            generate_all(&root)
                .err()
                .unwrap_or_else(|| panic!("{what} was accepted"))
        );
        assert!(error.contains(message), "{what}: {error}");
    }
    // Scopes on a bearer requirement are OAuth2's, not roles.
    let (_tmp, root) = copy_of_tree();
    edit(
        &root.join("openapi/beers.yaml"),
        "      x-roles: [admin]\n      tags: [beers]\n      summary: Add a beer to the catalogue\n      description: Admins only (others get 403). The sku must be unique.\n      security:\n        - bearerAuth: []",
        "      tags: [beers]\n      summary: Add a beer to the catalogue\n      description: Admins only (others get 403). The sku must be unique.\n      security:\n        - bearerAuth: [admin]",
    );
    let error = format!(
        "{:#}",
        generate_all(&root)
            .err()
            .expect("bearerAuth: [admin] was accepted")
    );
    assert!(
        error.contains("create_beer") && error.contains("x-roles"),
        "{error}"
    );
}

/// The served document, obtained once (it runs the server binary through cargo).
fn served() -> Value {
    static SERVED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SERVED
        .get_or_init(|| served_openapi(&workspace_root(), "users").unwrap())
        .clone()
}

#[test]
fn the_committed_yaml_matches_what_is_served() {
    assert_eq!(
        drift(&workspace_root(), "users", &served()).unwrap(),
        Vec::<String>::new()
    );
}

type Edit = fn(&mut Value);

#[test]
fn drift_between_yaml_and_server_is_caught() {
    // Each edit makes the YAML say something the server does not do.
    let cases: [(&str, Edit, &str); 6] = [
        (
            "new query parameter",
            |d| {
                let params = d
                    .pointer_mut("/paths/~1v1~1users/get/parameters")
                    .unwrap()
                    .as_array_mut()
                    .unwrap();
                params.push(json!({"name": "sort", "in": "query", "schema": {"type": "string"}}));
            },
            "query sort",
        ),
        (
            "renamed operation",
            |d| {
                *d.pointer_mut("/paths/~1v1~1users~1{user_id}/delete/operationId")
                    .unwrap() = json!("remove_user");
            },
            "operationId",
        ),
        (
            "changed status code",
            |d| {
                let r = d
                    .pointer_mut("/paths/~1v1~1users~1{user_id}/delete/responses")
                    .unwrap()
                    .as_object_mut()
                    .unwrap();
                let ok = r.shift_remove("204").unwrap();
                r.insert("200".into(), ok);
            },
            "204",
        ),
        (
            "property type",
            |d| {
                *d.pointer_mut("/components/schemas/User/properties/id")
                    .unwrap() = json!({"type": "integer"});
            },
            "id",
        ),
        (
            "extra required field",
            |d| {
                d.pointer_mut("/components/schemas/CreateUser/required")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .push(json!("first_name"));
            },
            "required",
        ),
        (
            "request body removed",
            |d| {
                d.pointer_mut("/paths/~1v1~1users/post")
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .shift_remove("requestBody");
            },
            "requestBody",
        ),
    ];
    for (what, change, expect) in cases {
        let (_tmp, root) = copy_of_tree();
        let path = root.join("openapi/bundled/users.yaml");
        let mut doc: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut doc);
        std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
        let found = drift(&root, "users", &served()).unwrap();
        assert!(
            found.iter().any(|d| d.contains(expect)),
            "{what} not caught: {found:?}"
        );
    }
    // And an operation the server serves that the YAML lacks.
    let mut extra = served();
    extra["paths"]["/v1/secret"] = json!({"get": {"operationId": "secret", "responses": {}}});
    let found = drift(&workspace_root(), "users", &extra).unwrap();
    assert!(
        found
            .iter()
            .any(|d| d.contains("GET /v1/secret: served but not in the YAML")),
        "{found:?}"
    );
}

#[test]
fn the_committed_specs_are_compatible_with_their_release() {
    let mut released = 0;
    for service in &services(&workspace_root()).unwrap() {
        // A service never released (a new one) has no clients to break yet.
        let Some(verdict) = compat::verdict(&workspace_root(), service).unwrap() else {
            continue;
        };
        released += 1;
        assert!(
            verdict.allowed().unwrap(),
            "{service}: {:?}",
            verdict.breaking
        );
    }
    assert!(released >= 5, "the five original services have releases");
}

#[test]
fn breaking_and_compatible_spec_changes_are_told_apart() {
    let tasks = |root: &Path| compat::verdict(root, "tasks").unwrap().unwrap();

    // Compatible: a longer title allowed, a new optional field, a new optional parameter.
    let (_tmp, root) = copy_of_tree();
    let spec = root.join("openapi/tasks.yaml");
    edit(&spec, "maxLength: 200", "maxLength: 300");
    edit(
        &spec,
        "        description:\n          $ref: \"#/components/schemas/Description\"\n",
        "        description:\n          $ref: \"#/components/schemas/Description\"\n        \
         due:\n          type: string\n          format: date\n",
    );
    edit(
        &spec,
        "        - $ref: \"common.yaml#/components/parameters/Limit\"",
        "        - name: q\n          in: query\n          schema:\n            type: string\n        \
         - $ref: \"common.yaml#/components/parameters/Limit\"",
    );
    let verdict = tasks(&root);
    assert_eq!(verdict.breaking, Vec::<String>::new());
    assert!(verdict.allowed().unwrap());

    // Breaking: a shorter title refuses what clients could send before.
    let (_tmp, root) = copy_of_tree();
    let spec = root.join("openapi/tasks.yaml");
    edit(&spec, "maxLength: 200", "maxLength: 100");
    let verdict = tasks(&root);
    assert!(
        verdict.breaking.iter().any(|b| b.contains(
            "POST /v1/tasks: request body (application/json)/title: maxLength lowered to 100"
        )),
        "{:?}",
        verdict.breaking
    );
    assert!(!verdict.allowed().unwrap());
    // ... which a new major version announces.
    edit(&spec, "version: 1.0.0", "version: 2.0.0");
    assert!(tasks(&root).allowed().unwrap());
}

#[test]
fn the_committed_specs_are_publishable() {
    let root = workspace_root();
    for service in &services(&root).unwrap() {
        let bundled = xtask::bundle::bundle_service(&root.join("openapi"), service).unwrap();
        assert_eq!(
            xtask::quality::problems(&bundled),
            Vec::<String>::new(),
            "{service}"
        );
    }
}

#[test]
fn an_undescribed_property_or_invalid_example_fails_the_check() {
    let (_tmp, root) = copy_of_tree();
    let spec = root.join("openapi/tasks.yaml");
    edit(&spec, "      description: What is to be done.\n", "");
    edit(&spec, "example: Buy hops", "example: \"\"");
    let bundled = xtask::bundle::bundle_service(&root.join("openapi"), "tasks").unwrap();
    let problems = xtask::quality::problems(&bundled);
    for expect in [
        "schema CreateTask.title: no description",
        "schema Title: example \"\" is invalid",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{expect:?} not in {problems:?}"
        );
    }
}

/// One target directory serving two clones, as `.ci/run`'s shared cache does: cargo runs
/// the xtask binary already built, and it must act on the clone it was invoked in.
#[test]
fn cargo_xtask_acts_on_the_clone_it_is_run_in() {
    // This test run's target directory, where `served()` builds the server: for copies
    // with the checkout's modification times it is fresh, and is not built again.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let (_first_tmp, first) = copy_of_workspace();
    let (_second_tmp, second) = copy_of_workspace();
    let first_before = contents(&first);
    // Cargo builds xtask here if it is not fresh, so the binary the second copy gets was
    // built for the first one (or for the checkout), never for the second.
    let help = cargo_xtask(&first, target_dir, "help");
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );

    let described = "What is to be done, in a few words.";
    edit(
        &second.join("openapi/tasks.yaml"),
        "description: What is to be done.",
        &format!("description: {described}"),
    );
    // Not generated yet: the second copy is stale.
    let check = cargo_xtask(&second, target_dir, "check");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "check passed on a stale copy");
    assert!(
        stderr.contains("openapi/bundled/tasks.yaml is stale"),
        "{stderr}"
    );

    // `gen`, from a subdirectory of the second copy, writes there and only there.
    let second_before = contents(&second);
    let gen = cargo_xtask(&second.join("openapi"), target_dir, "gen");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let second_after = contents(&second);
    let expected = [
        "client/src/generated/tasks.rs",
        "openapi/bundled/gateway.yaml",
        "openapi/bundled/tasks.yaml",
    ]
    .map(PathBuf::from);
    assert_eq!(changed(&second_before, &second_after), expected);
    for file in &expected {
        let text = String::from_utf8_lossy(&second_after[file]);
        assert!(text.contains(described), "{}", file.display());
    }
    assert_eq!(
        changed(&first_before, &contents(&first)),
        Vec::<PathBuf>::new()
    );

    // The first copy is still fresh, and `check` there says so.
    let check = cargo_xtask(&first, target_dir, "check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("xtask check: specs valid"));
}
