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
    }

    let config = taproom_server::runtime::config::Config::from_env().unwrap();
    let mut seen = BTreeSet::new();
    for file in std::fs::read_dir(root().join("deploy/k8s")).unwrap() {
        let path = file.unwrap().path();
        let name = format!("deploy/k8s/{}", path.file_name().unwrap().to_string_lossy());
        for doc in docs(&name) {
            match doc["kind"].as_str() {
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
