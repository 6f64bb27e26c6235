//! The deployment files stay in step with the services: every setting they set is one
//! the server reads, every port is the service's port, and the gateway routes every path
//! of the combined API document to the service that serves it.

use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every environment variable the server reads (from its clap definition).
fn settings() -> BTreeSet<String> {
    use clap::Args;
    let cmd = taproom_server::runtime::config::Config::augment_args(clap::Command::new("t"));
    cmd.get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

fn docs(path: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

use serde::Deserialize;

#[test]
fn compose_and_kubernetes_set_only_real_settings_and_ports() {
    let known = settings();
    assert!(known.contains("DATABASE_URL") && known.contains("EVENTS_TOKEN"));
    let compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    let env = compose["x-service"]["environment"].as_mapping().unwrap();
    for key in env.keys() {
        let key = key.as_str().unwrap();
        assert!(
            known.contains(key),
            "deploy/compose.yaml sets {key}, which the server does not read"
        );
    }
    for service in taproom_server::SERVICES.iter().map(|s| &s.name) {
        let s = &compose["services"][*service];
        assert_eq!(
            s["command"][0].as_str(),
            Some(*service),
            "compose runs {service}"
        );
        assert_eq!(s["healthcheck"]["test"][3].as_str(), Some(*service));
        // A service's own settings (merged over the shared ones) are real settings too.
        if let Some(own) = s["environment"].as_mapping() {
            for key in own.keys().filter_map(|k| k.as_str()).filter(|k| *k != "<<") {
                assert!(
                    known.contains(key),
                    "deploy/compose.yaml sets {key} for {service}, which the server does not read"
                );
            }
        }
    }

    let config = taproom_server::runtime::config::Config::from_env().unwrap();
    let k8s: Vec<(String, Value)> = std::fs::read_dir(root().join("deploy/k8s"))
        .unwrap()
        .flat_map(|file| {
            let path = file.unwrap().path();
            let name = format!("deploy/k8s/{}", path.file_name().unwrap().to_string_lossy());
            docs(&name).into_iter().map(move |doc| (name.clone(), doc))
        })
        .collect();
    // Secrets mounted as files hold files, not settings.
    let mounted: BTreeSet<&str> = k8s
        .iter()
        .filter_map(|(_, doc)| doc["spec"]["template"]["spec"]["volumes"].as_sequence())
        .flatten()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    let mut seen = BTreeSet::new();
    for (name, doc) in &k8s {
        {
            match doc["kind"].as_str() {
                Some("Secret") if mounted.contains(doc["metadata"]["name"].as_str().unwrap()) => {}
                Some("ConfigMap") | Some("Secret") => {
                    let data = doc.get("data").or_else(|| doc.get("stringData")).unwrap();
                    for key in data.as_mapping().unwrap().keys() {
                        let key = key.as_str().unwrap();
                        assert!(
                            known.contains(key),
                            "{name} sets {key}, which the server does not read"
                        );
                    }
                }
                Some("Deployment") => {
                    let service = doc["metadata"]["name"].as_str().unwrap();
                    let container = &doc["spec"]["template"]["spec"]["containers"][0];
                    assert_eq!(container["args"][0].as_str(), Some(service));
                    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
                    assert_eq!(
                        port,
                        u64::from(config.service(service).port),
                        "{service}'s port in {name}"
                    );
                    assert_eq!(
                        container["readinessProbe"]["httpGet"]["path"].as_str(),
                        Some("/readyz")
                    );
                    assert_eq!(
                        container["livenessProbe"]["httpGet"]["path"].as_str(),
                        Some("/healthz")
                    );
                    for var in container["env"].as_sequence().into_iter().flatten() {
                        let key = var["name"].as_str().unwrap();
                        assert!(
                            known.contains(key),
                            "{name} sets {key}, which the server does not read"
                        );
                    }
                    seen.insert(service.to_string());
                }
                _ => {}
            }
        }
    }
    let all: BTreeSet<String> = taproom_server::SERVICES
        .iter()
        .map(|s| s.name)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, all, "a Deployment per service");
}

/// The service that serves each path of the combined document, from the per-service ones.
fn owners() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in taproom_server::SERVICES.iter().map(|s| &s.name) {
        let doc: Value =
            serde_yaml::from_str(&read(&format!("openapi/bundled/{service}.yaml"))).unwrap();
        for (path, _) in doc["paths"].as_mapping().unwrap() {
            out.push((path.as_str().unwrap().to_string(), service.to_string()));
        }
    }
    out
}

#[test]
fn the_gateway_routes_every_api_path_to_its_service() {
    let conf = read("deploy/nginx.conf");
    // `location <prefix> { proxy_pass http://<upstream>; }`, longest prefix wins.
    let routes: Vec<(String, String)> = conf
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("location ")?;
            let (prefix, body) = rest.split_once(" { proxy_pass http://")?;
            let upstream = body.split([';', '/']).next()?;
            Some((
                prefix.trim_start_matches("= ").to_string(),
                upstream.to_string(),
            ))
        })
        .collect();
    let ingress = docs("deploy/k8s/ingress.yaml");
    let ingress_routes: Vec<(String, String)> = ingress[0]["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["backend"]["service"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let gateway: Value = serde_yaml::from_str(&read("openapi/bundled/gateway.yaml")).unwrap();
    let owners = owners();
    for (path, _) in gateway["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        let owner = &owners.iter().find(|(p, _)| p == path).unwrap().1;
        for (what, table) in [
            ("deploy/nginx.conf", &routes),
            ("deploy/k8s/ingress.yaml", &ingress_routes),
        ] {
            let routed = table
                .iter()
                .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, upstream)| upstream);
            assert_eq!(routed, Some(owner), "{what} routes {path} to {owner}");
        }
        let built_in = taproom_server::gateway::route(path).map(|(service, _)| service);
        assert_eq!(
            built_in,
            Some(owner.as_str()),
            "server all's gateway routes {path} to {owner}"
        );
    }
    for service in taproom_server::SERVICES.iter().map(|s| &s.name) {
        let theirs = owners
            .iter()
            .filter(|(p, s)| s == service && gateway["paths"].get(p.as_str()).is_some())
            .count();
        assert!(theirs > 0, "the gateway document has {service}'s paths");
    }
}

/// Each service reaches PostgreSQL as its own role, owner of its own database only, and
/// only the users service gets the key-encryption key of the signing keys: in compose
/// and in Kubernetes (whose per-service Secrets only that service's Deployment reads).
#[test]
fn every_service_has_its_own_database_role() {
    let compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    let shared = compose["x-service"]["environment"].as_mapping().unwrap();
    assert!(
        !shared
            .keys()
            .any(|k| k.as_str().unwrap().ends_with("DATABASE_URL")),
        "no database URL shared by every service"
    );
    let roles = read("deploy/postgres/roles.sh");
    for def in taproom_server::SERVICES {
        let (service, env) = (def.name, def.env_prefix());
        let url = compose["services"][service]["environment"][format!("{env}_DATABASE_URL")]
            .as_str()
            .unwrap_or_else(|| panic!("compose gives {service} its own database URL"));
        // The password is interpolated by compose: `${VAR:?message}`.
        let (head, rest) = url.split_once("${").unwrap_or((url, "}"));
        let url = format!("{head}password{}", rest.split_once('}').unwrap().1);
        let url = reqwest::Url::parse(&url).unwrap();
        assert_eq!(
            url.username(),
            service,
            "{service} connects as its own role"
        );
        assert_eq!(url.path(), format!("/taproom_{service}"));
        let kek = compose["services"][service]["environment"].get("SIGNING_KEY_FILE");
        assert_eq!(
            kek.is_some(),
            service == "users",
            "only users reads the KEK"
        );
        assert!(
            roles.contains(service) && roles.contains("REVOKE ALL ON DATABASE"),
            "deploy/postgres/roles.sh makes {service}'s role"
        );

        let deployment = docs(&format!("deploy/k8s/{service}.yaml"))
            .into_iter()
            .find(|d| d["kind"].as_str() == Some("Deployment"))
            .unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let secrets: Vec<&str> = pod["containers"][0]["envFrom"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|e| e["secretRef"]["name"].as_str())
            .collect();
        assert!(secrets.contains(&format!("{service}-database").as_str()));
        let mounts_kek = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|v| v["secret"]["secretName"].as_str() == Some("users-signing-key"));
        assert_eq!(mounts_kek, service == "users", "only users mounts the KEK");
    }
    let secrets = docs("deploy/k8s/config.yaml");
    for doc in &secrets {
        let name = doc["metadata"]["name"].as_str().unwrap();
        let keys: Vec<&str> = doc["stringData"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys().filter_map(|k| k.as_str()))
            .collect();
        for key in keys.iter().filter(|k| k.ends_with("DATABASE_URL")) {
            let service = key.trim_end_matches("_DATABASE_URL").to_ascii_lowercase();
            assert_eq!(
                name,
                format!("{service}-database"),
                "{key} is in its service's Secret"
            );
        }
    }
}

/// deploy/lambda/template.yaml: every function runs a real service (its `Handler`), sets
/// only settings the server reads, and is routed only paths that service serves.
#[test]
fn the_lambda_template_sets_real_settings_and_routes_each_path_to_its_service() {
    let known = settings();
    let template: Value = serde_yaml::from_str(&read("deploy/lambda/template.yaml")).unwrap();
    let globals = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    let mut functions = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let name = name.as_str().unwrap();
        let props = &resource["Properties"];
        let handler = props["Handler"].as_str().unwrap();
        let def = taproom_server::runtime::registry::find(handler)
            .unwrap_or_else(|| panic!("{name}: Handler {handler} is not a service"));
        let own = props["Environment"]["Variables"].as_mapping();
        for key in globals.keys().chain(own.into_iter().flat_map(|m| m.keys())) {
            let key = key.as_str().unwrap();
            assert!(
                known.contains(key),
                "deploy/lambda/template.yaml sets {key} for {name}, which the server does not read"
            );
        }
        let prefixes = def.public_prefixes().unwrap();
        for (_, event) in props["Events"].as_mapping().unwrap() {
            let path = event["Properties"]["Path"].as_str().unwrap();
            let path = path.trim_end_matches("{proxy+}");
            assert!(
                prefixes.iter().any(|p| path.starts_with(p.as_str())),
                "{name} is routed {path}, which {handler} does not serve ({prefixes:?})"
            );
        }
    }
    assert_eq!(functions, 3, "users, beers and tasks");
}
