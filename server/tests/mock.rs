//! The mock server (`server mock`): every bundled spec served in-process, from its
//! examples and from generated values, every answer checked against the operation's
//! response schema; the request checks and problems of the real services; `Prefer`;
//! two mocks in one process, each with its own validators; and the `server mock` command.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use taproom_server::mock::{self, Direction};
use taproom_server::runtime::config::Config;
use taproom_server::runtime::schema::compile;

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A mock of `yaml` on a free port, and its base URL.
fn serve(name: &'static str, yaml: &'static str) -> (dropshot::HttpServer<mock::Mock>, String) {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let config = Config::from_env().unwrap();
    let server = mock::start(name, yaml, &config, &log, "127.0.0.1:0".parse().unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let url = format!("http://{}", server.local_addr());
    (server, url)
}

fn service(name: &str) -> (dropshot::HttpServer<mock::Mock>, String) {
    let target = mock::Target::resolve(name).unwrap();
    serve(target.name, target.yaml)
}

fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => deref(doc, doc.pointer(&r[1..]).expect("local ref")),
        None => v,
    }
}

/// The bundled specs of the services (the gateway's combined document is not one).
fn bundled_specs() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/bundled");
    let mut specs: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "gateway"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    specs.sort();
    assert!(specs.len() >= 5, "found only {specs:?}");
    specs
}

struct Op<'a> {
    path: &'a str,
    method: &'a str,
    op: &'a Value,
    params: Vec<&'a Value>,
}

impl Op<'_> {
    fn id(&self) -> &str {
        self.op["operationId"].as_str().unwrap()
    }
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let params = item
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                )
                .map(|p| deref(doc, p))
                .collect();
            ops.push(Op {
                path,
                method,
                op,
                params,
            });
        }
    }
    ops
}

fn protected(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").or_else(|| doc.get("security"));
    security.and_then(Value::as_array).is_some_and(|alts| {
        !alts.is_empty()
            && alts
                .iter()
                .all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A request the operation must accept: required parameters and the body from the
/// document's examples (or generated), a token when the operation is protected.
fn valid_request(
    doc: &Value,
    client: &reqwest::Client,
    base: &str,
    op: &Op,
) -> reqwest::RequestBuilder {
    let value = |p: &Value| {
        p.get("example")
            .cloned()
            .unwrap_or_else(|| mock::generate(doc, &p["schema"], Direction::Request))
    };
    let mut path = op.path.to_string();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for p in &op.params {
        let name = p["name"].as_str().unwrap();
        let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
        match p["in"].as_str().unwrap() {
            "path" => {
                let encoded: String =
                    url::form_urlencoded::byte_serialize(text(&value(p)).as_bytes()).collect();
                path = path.replace(&format!("{{{name}}}"), &encoded);
            }
            "query" if required => query.push((name.to_string(), text(&value(p)))),
            // Optional headers too (their values are checked), but not a condition.
            "header" if !name.eq_ignore_ascii_case("if-none-match") => {
                headers.push((name.to_string(), text(&value(p))))
            }
            _ => {}
        }
    }
    let method = reqwest::Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("{base}{path}"))
        .query(&query);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(media) = op
        .op
        .get("requestBody")
        .map(|b| deref(doc, b))
        .and_then(|b| b.pointer("/content/application~1json"))
    {
        request = request.json(&mock::media_example(doc, media, Direction::Request));
    }
    if protected(doc, op.op) {
        request = request.bearer_auth("any-token-will-do");
    }
    request
}

fn default_status(op: &Value) -> u16 {
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.parse::<u16>().ok())
        .filter(|c| (200..300).contains(c))
        .min()
        .expect("a 2xx response")
}

/// Sends a valid request to every operation of `yaml`'s mock and checks the answer:
/// the default 2xx, its declared headers, a body that validates against the schema.
/// Returns how many operations were checked.
async fn exercise(name: &'static str, yaml: &'static str, failures: &mut Vec<String>) -> usize {
    let doc: Value = serde_yaml::from_str(yaml).unwrap();
    let (server, url) = serve(name, yaml);
    let client = reqwest::Client::new();
    let mut checked = 0;
    for op in operations(&doc) {
        let id = format!("{name} {}", op.id());
        let response = valid_request(&doc, &client, &url, &op)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let expected = default_status(op.op);
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        if status != expected {
            failures.push(format!(
                "{id}: {status} (want {expected}): {}",
                String::from_utf8_lossy(&body)
            ));
            continue;
        }
        let declared = deref(&doc, &op.op["responses"][expected.to_string()]);
        for header in declared
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(h, _)| h)
        {
            if !headers.contains_key(header.as_str()) {
                failures.push(format!("{id}: no {header} header"));
            }
        }
        match declared.pointer("/content/application~1json/schema") {
            None => {
                if !body.is_empty() {
                    failures.push(format!("{id}: a body where none is declared"));
                }
            }
            Some(schema) => {
                assert_eq!(
                    headers[reqwest::header::CONTENT_TYPE],
                    "application/json",
                    "{id}"
                );
                let value: Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        failures.push(format!("{id}: not JSON: {e}"));
                        continue;
                    }
                };
                let mut errors = Vec::new();
                compile(&doc, schema)
                    .unwrap()
                    .violations(&value, "", &mut errors);
                for error in errors {
                    failures.push(format!(
                        "{id}: {value} at {}: {}",
                        error.pointer, error.message
                    ));
                }
            }
        }
        checked += 1;
    }
    server.close().await.unwrap();
    checked
}

/// The document without any `example` or `examples` (a property of either name stays).
fn strip_examples(value: &mut Value, in_properties: bool) {
    match value {
        Value::Object(map) => {
            if !in_properties {
                map.remove("example");
                map.remove("examples");
            }
            for (key, child) in map.iter_mut() {
                strip_examples(child, !in_properties && key == "properties");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_examples(v, false)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_of_every_bundled_spec_answers_its_default_success_with_a_valid_body() {
    let mut failures = Vec::new();
    for (name, yaml) in bundled_specs() {
        let mut doc: Value = serde_yaml::from_str(&yaml).unwrap();
        let ops = operations(&doc).len();
        let checked = exercise(leak(name.clone()), leak(yaml), &mut failures).await;
        assert!(
            checked == ops || !failures.is_empty(),
            "{name}: {checked} of {ops}"
        );

        // With no examples at all, every answer (and request body) is generated.
        strip_examples(&mut doc, false);
        let bare = serde_yaml::to_string(&doc).unwrap();
        assert!(
            !bare.contains(" example:") && !bare.contains(" examples:"),
            "{name}: examples left"
        );
        let checked = exercise(leak(format!("{name}-generated")), leak(bare), &mut failures).await;
        assert!(
            checked == ops || !failures.is_empty(),
            "{name} generated: {checked} of {ops}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    body
}

fn pointers(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn bad_input_gets_the_same_problems_as_the_real_services() {
    let (server, url) = service("tasks");
    let client = reqwest::Client::new();
    let token = "Bearer whatever";
    let task = format!("{url}/v1/tasks/0193b4a2-5c1e-7d3f-8a2b-4c5d6e7f8091");

    let body = problem(
        client
            .get(format!("{url}/v1/tasks/not-a-uuid"))
            .header("authorization", token)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["type"], "https://taproom.dev/problems/validation");
    assert_eq!(pointers(&body)[0].0, "/path/task_id", "{body}");

    // Every violation of the body at once.
    let body = problem(
        client
            .post(format!("{url}/v1/tasks"))
            .header("authorization", token)
            .json(&json!({"title": "", "bogus": 1}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let errors = pointers(&body);
    assert!(
        errors.contains(&("/bogus".into(), "is not a known field".into())),
        "{body}"
    );
    assert!(errors.iter().any(|(p, _)| p == "/title"), "{body}");

    let body = problem(
        client
            .get(format!("{url}/v1/tasks?limit=0&bogus=1"))
            .header("authorization", token)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let errors = pointers(&body);
    assert!(errors.iter().any(|(p, _)| p == "/query/limit"), "{body}");
    assert!(
        errors.contains(&("/query/bogus".into(), "is not a known parameter".into())),
        "{body}"
    );

    let post = || {
        client
            .post(format!("{url}/v1/tasks"))
            .header("authorization", token)
    };
    problem(
        post()
            .header("content-type", "text/plain")
            .body("hi")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    let body = problem(post().send().await.unwrap(), 400).await;
    assert_eq!(body["detail"], "A JSON request body is required.");
    problem(
        post()
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let huge = json!({ "title": "x".repeat(1024 * 1024 + 1) });
    problem(post().json(&huge).send().await.unwrap(), 413).await;

    // The router's own errors are problems too.
    problem(
        client.get(format!("{url}/nowhere")).send().await.unwrap(),
        404,
    )
    .await;
    let response = client
        .put(&task)
        .header("authorization", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, PATCH, DELETE");
    problem(response, 405).await;

    // Valid input is answered.
    let response = post()
        .json(&json!({"title": "Buy hops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/tasks/{}", created["id"].as_str().unwrap())
    );
    server.close().await.unwrap();
}

#[tokio::test]
async fn protected_operations_want_credentials_but_verify_none() {
    let (tasks, url) = service("tasks");
    let client = reqwest::Client::new();
    let response = client.get(format!("{url}/v1/tasks")).send().await.unwrap();
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body = problem(response, 401).await;
    let doc: Value = serde_yaml::from_str(mock::Target::resolve("tasks").unwrap().yaml).unwrap();
    assert!(
        compile(&doc, &json!({"$ref": "#/components/schemas/Problem"}))
            .unwrap()
            .is_valid(&body)
    );
    // Security comes first: an anonymous caller learns nothing about the parameters.
    problem(
        client
            .get(format!("{url}/v1/tasks/not-a-uuid"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    // Any credentials are accepted.
    for authorization in ["Bearer not.a.jwt", "Basic Zm9vOmJhcg=="] {
        let response = client
            .get(format!("{url}/v1/tasks"))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Public operations need nothing.
    assert_eq!(
        client
            .get(format!("{url}/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tasks.close().await.unwrap();

    // `security: [{basicAuth: []}, {}]`: credentials are optional.
    let (users, url) = service("users");
    let response = client
        .post(format!("{url}/v1/auth/token"))
        .json(&json!({"username": "ada", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    // x-roles: admin is not checked either (the mock knows no roles).
    let response = client
        .get(format!("{url}/v1/users"))
        .bearer_auth("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    users.close().await.unwrap();
}

#[tokio::test]
async fn prefer_code_picks_a_declared_status() {
    let (server, url) = service("tasks");
    let doc: Value = serde_yaml::from_str(mock::Target::resolve("tasks").unwrap().yaml).unwrap();
    let problem_schema = compile(&doc, &json!({"$ref": "#/components/schemas/Problem"})).unwrap();
    let client = reqwest::Client::new();
    let get = |prefer: &str| {
        client
            .get(format!(
                "{url}/v1/tasks/0193b4a2-5c1e-7d3f-8a2b-4c5d6e7f8091"
            ))
            .bearer_auth("t")
            .header("prefer", prefer)
            .send()
    };
    // Declared exactly, and through the 4XX range.
    for code in [404, 418] {
        let body = problem(get(&format!("code={code}")).await.unwrap(), code).await;
        assert!(problem_schema.is_valid(&body), "{body}");
    }
    assert_eq!(get("code=200").await.unwrap().status(), 200);
    let body = problem(get("code=302").await.unwrap(), 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("200, 401, 404, 4XX, 5XX"),
        "{body}"
    );
    problem(get("code=teapot").await.unwrap(), 400).await;
    // Other preferences are ignored.
    assert_eq!(get("respond-async, wait=10").await.unwrap().status(), 200);
    // A 204 has no body.
    let response = client
        .delete(format!(
            "{url}/v1/tasks/0193b4a2-5c1e-7d3f-8a2b-4c5d6e7f8091"
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());
    server.close().await.unwrap();

    // The ETag the mock sets works with If-None-Match like the real service's.
    let (beers, url) = service("beers");
    let beer = format!("{url}/v1/beers/0193b4a2-5c1e-7d3f-8a2b-4c5d6e7f8091");
    let response = client.get(&beer).send().await.unwrap();
    let tag = response.headers()["etag"].to_str().unwrap().to_string();
    assert!(tag.starts_with('"'), "{tag}");
    let response = client
        .get(&beer)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    beers.close().await.unwrap();
}

const GREETINGS: &str = r##"
openapi: 3.0.3
info: {title: Greetings, version: 1.0.0}
paths:
  /greetings/{lang}:
    get:
      operationId: get_greeting
      parameters:
      - {name: lang, in: path, required: true, schema: {type: string, enum: [en, fr]}}
      responses:
        '200':
          description: A greeting.
          headers:
            ETag: {schema: {type: string}, example: '"v1"'}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Greeting'}
              examples:
                hello: {value: {text: Hello}}
                bonjour: {$ref: '#/components/examples/Bonjour'}
        '404':
          description: No greeting in that language.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Greeting'}
              example: {text: '?'}
  /farewell:
    get:
      operationId: get_farewell
      responses:
        '200':
          description: A farewell, from the schema's example.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Farewell'}
  /secret:
    get:
      operationId: get_secret
      security: [{apiKey: []}, {queryKey: []}]
      parameters:
      - {name: verbose, in: query, schema: {type: boolean}}
      responses:
        '200':
          description: The secret.
          content: {application/json: {schema: {type: string, minLength: 8}}}
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-API-Key}
    queryKey: {type: apiKey, in: query, name: key}
  examples:
    Bonjour: {value: {text: Bonjour}}
  schemas:
    Greeting:
      type: object
      additionalProperties: false
      required: [text]
      properties: {text: {type: string, maxLength: 20}}
    Farewell:
      type: object
      example: {text: Bye}
      properties: {text: {type: string}}
"##;

#[tokio::test]
async fn prefer_example_picks_a_named_example() {
    let (server, url) = serve("greetings", GREETINGS);
    let client = reqwest::Client::new();
    let get = |prefer: &str| {
        client
            .get(format!("{url}/greetings/en"))
            .header("prefer", prefer)
            .send()
    };

    let response = client
        .get(format!("{url}/greetings/en"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], "\"v1\"");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"text": "Hello"})
    );
    let response = get("example=bonjour").await.unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"text": "Bonjour"})
    );
    let body = problem(get("example=ciao").await.unwrap(), 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("hello, bonjour"),
        "{body}"
    );
    // Both at once; a response without named examples says so.
    let response = get("code=404").await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"text": "?"})
    );
    let body = problem(get("code=404, example=hello").await.unwrap(), 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no named examples"),
        "{body}"
    );
    // The schema's own example; the enum of a path parameter.
    let response = client.get(format!("{url}/farewell")).send().await.unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"text": "Bye"})
    );
    let body = problem(
        client
            .get(format!("{url}/greetings/de"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(pointers(&body)[0].0, "/path/lang");
    // API keys: present (in the header or the query) is enough.
    let secret = format!("{url}/secret");
    let body = problem(client.get(&secret).send().await.unwrap(), 401).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("`X-API-Key` header"),
        "{body}"
    );
    let response = client
        .get(&secret)
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!("stringxx"));
    let response = client
        .get(format!("{secret}?key=k&verbose=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = problem(
        client
            .get(format!("{secret}?key=k&verbose=maybe"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(
        pointers(&body),
        vec![("/query/verbose".into(), "must be true or false".into())]
    );
    // The document and its page.
    let served: Value = client
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["info"]["title"], "Greetings");
    assert_eq!(
        client
            .get(format!("{url}/docs"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.close().await.unwrap();
}

/// A document whose response schema is in another file.
fn external_ref() -> String {
    things(3).replace(
        "schema: {type: object, required: [name], properties: {name: {type: string}}}",
        "schema: {$ref: 'common.yaml#/components/schemas/Thing'}",
    )
}

fn things(max_length: u32) -> &'static str {
    leak(format!(
        r##"
openapi: 3.0.3
info: {{title: Things, version: 1.0.0}}
paths:
  /things:
    post:
      operationId: create_thing
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [name]
              properties:
                name: {{type: string, maxLength: {max_length}}}
      responses:
        '201':
          description: Created.
          content:
            application/json:
              schema: {{type: object, required: [name], properties: {{name: {{type: string}}}}}}
"##
    ))
}

#[tokio::test]
async fn two_mocks_in_one_process_each_validate_against_their_own_spec() {
    let (short, short_url) = serve("short", things(3));
    let (long, long_url) = serve("long", things(10));
    let client = reqwest::Client::new();
    let send = |url: &str, name: &str| {
        client
            .post(format!("{url}/things"))
            .json(&json!({ "name": name }))
            .send()
    };

    let body = problem(send(&short_url, "abcdef").await.unwrap(), 400).await;
    assert_eq!(pointers(&body)[0].0, "/name");
    assert_eq!(send(&long_url, "abcdef").await.unwrap().status(), 201);
    assert_eq!(send(&short_url, "abc").await.unwrap().status(), 201);
    problem(send(&long_url, "abcdefghijk").await.unwrap(), 400).await;
    short.close().await.unwrap();
    long.close().await.unwrap();
}

#[tokio::test]
async fn only_bundled_openapi_3_0_documents_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let config = Config::from_env().unwrap();
    let attempt = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        mock::start_target(path.to_str().unwrap(), Some(0), &config, &log)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    let error = attempt("external.yaml", &external_ref());
    assert!(
        error.contains("common.yaml#/components/schemas/Thing") && error.contains("bundled"),
        "{error}"
    );
    let dangling = things(3).replace(
        "schema: {type: object, required: [name], properties: {name: {type: string}}}",
        "schema: {$ref: '#/components/schemas/Nowhere'}",
    );
    assert!(attempt("dangling.yaml", &dangling).contains("resolves to nothing"));
    let swagger = "swagger: '2.0'\ninfo: {title: Old, version: '1'}\npaths: {}\n";
    assert!(attempt("old.yaml", swagger).contains("not OpenAPI 3.0"));
    let no_id = things(3).replace("      operationId: create_thing\n", "");
    let error = attempt("no-id.yaml", &no_id);
    assert!(error.contains("POST /things has no operationId"), "{error}");
    let error = mock::Target::resolve("no-such-service")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("tasks"), "{error}");

    // A JSON file is a document too.
    let doc: Value = serde_yaml::from_str(things(3)).unwrap();
    let path = dir.path().join("things.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let server = mock::start_target(path.to_str().unwrap(), Some(0), &config, &log).unwrap();
    server.close().await.unwrap();
}

#[test]
fn generated_values_validate_against_tricky_schemas() {
    let doc = json!({"components": {"schemas": {
        "Id": {"type": "string", "format": "uuid"},
        "Base": {"type": "object", "required": ["id"], "properties": {"id": {"$ref": "#/components/schemas/Id"}}},
        "Node": {"type": "object", "additionalProperties": false, "required": ["name"],
                 "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}
    }}});
    let schemas = [
        json!({"type": "string", "minLength": 30, "maxLength": 40}),
        json!({"type": "string", "maxLength": 3}),
        json!({"type": "string", "format": "date-time"}),
        json!({"type": "string", "format": "email", "maxLength": 254}),
        json!({"type": "string", "format": "uri", "pattern": "^https?://[^\\s]+$", "maxLength": 2000}),
        json!({"type": "string", "pattern": "^(https?://[^\\s]+)?$", "minLength": 1}),
        json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "minLength": 3, "maxLength": 64}),
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}),
        json!({"type": "string", "pattern": "^(0\\.(0[1-9]|[1-9][0-9])|[1-9][0-9]{0,5}\\.[0-9]{2})$"}),
        json!({"type": "string", "pattern": "^[A-Z0-9][A-Z0-9-]{2,31}$"}),
        json!({"type": "string", "pattern": "^\\d{3}-\\d{4}$"}),
        json!({"type": "string", "enum": ["b", "a"]}),
        json!({"type": "integer", "minimum": 100, "maximum": 599}),
        json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true, "multipleOf": 5}),
        json!({"type": "integer", "maximum": -3}),
        json!({"type": "number", "minimum": 0.5, "maximum": 0.75}),
        json!({"type": "number", "maximum": 0, "exclusiveMaximum": true}),
        json!({"type": "array", "minItems": 3, "items": {"type": "boolean"}}),
        json!({"type": "array", "maxItems": 0}),
        json!({"type": "string", "nullable": true}),
        json!({"allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 2}}}]}),
        json!({"oneOf": [{"type": "string", "maxLength": 5}, {"type": "string", "minLength": 3}]}),
        json!({"oneOf": [{"$ref": "#/components/schemas/Base"}, {"type": "string"}]}),
        json!({"anyOf": [{"type": "string", "format": "uuid"}, {"type": "integer"}]}),
        json!({"type": "object", "additionalProperties": false, "minProperties": 1, "properties": {"a": {"type": "string"}}}),
        json!({"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}}),
        json!({"$ref": "#/components/schemas/Node"}),
    ];
    for schema in schemas {
        let value = mock::generate(&doc, &schema, Direction::Response);
        let mut errors = Vec::new();
        compile(&doc, &schema)
            .unwrap()
            .violations(&value, "", &mut errors);
        assert!(errors.is_empty(), "{schema} gave {value}: {errors:?}");
    }
    // Deterministic: the same schema, the same value.
    let node = json!({"$ref": "#/components/schemas/Node"});
    assert_eq!(
        mock::generate(&doc, &node, Direction::Response),
        mock::generate(&doc, &node, Direction::Response)
    );
    assert_eq!(
        mock::pattern_string("^[A-Z0-9][A-Z0-9-]{2,31}$", 0, None).unwrap(),
        "AAA"
    );
    assert_eq!(mock::pattern_string("^[a-z]+$", 0, Some(0)), None);
}

/// `server mock`, the real binary: a service's spec on `--port`, and a refused file.
#[test]
fn the_mock_command_serves_a_service_and_refuses_an_unbundled_file() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["mock", "tasks", "--port", "0", "--log-level", "warning"])
        .env_remove("BIND_ADDRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("tasks mock"), "{line}");
    let url = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(|a| format!("http://{a}"));
    let url = url.unwrap_or_else(|| panic!("no address in {line:?}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses = runtime.block_on(async {
        let client = reqwest::Client::new();
        let anonymous = client
            .get(format!("{url}/v1/tasks"))
            .send()
            .await
            .unwrap()
            .status();
        let with_token = client
            .get(format!("{url}/v1/tasks"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .status();
        let docs = client
            .get(format!("{url}/docs"))
            .send()
            .await
            .unwrap()
            .status();
        (anonymous.as_u16(), with_token.as_u16(), docs.as_u16())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(statuses, (401, 200, 200));

    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("api.yaml");
    std::fs::write(&spec, external_ref()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["mock", spec.to_str().unwrap(), "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bundled"), "{stderr}");
}
