//! A DynamoDB table as a service's store (feature `aws`): `dynamodb://<table>?region=…&
//! endpoint=…&create=…`. The service says what its table looks like; this module opens
//! the client, checks the table's key at start-up (creating the table when asked), and
//! answers `readyz`.

use super::metrics::Metrics;
use anyhow::{Context, Result};
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{KeyType, TableStatus};
use aws_sdk_dynamodb::Client;
use std::sync::Arc;
use std::time::Duration;

/// How long `readyz` waits for DynamoDB before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the table is, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub table: String,
    pub region: String,
    /// Another endpoint than AWS's (DynamoDB Local, moto); `None`: the region's own.
    pub endpoint: Option<String>,
    /// Create the table when it is missing (the default with an `endpoint`: local use).
    pub create: bool,
}

impl Location {
    /// From `dynamodb://<table>?region=…&endpoint=…&create=true|false`; the region falls
    /// back to `AWS_REGION` (which Lambda sets), the endpoint to `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn parse(url: &str) -> Result<Location> {
        let parsed =
            url::Url::parse(url).with_context(|| format!("{url:?} is not a dynamodb:// URL"))?;
        anyhow::ensure!(
            parsed.scheme() == "dynamodb",
            "{url:?} is not a dynamodb:// URL"
        );
        let table = parsed.host_str().unwrap_or_default().to_string();
        anyhow::ensure!(
            (3..=255).contains(&table.len())
                && table
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "{url:?}: the table name (the URL's host) must be 3 to 255 of [A-Za-z0-9_.-]"
        );
        let param = |name: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let region = param("region")
            .or_else(|| std::env::var("AWS_REGION").ok())
            .with_context(|| format!("{url:?}: no region (add ?region=… or set AWS_REGION)"))?;
        let endpoint =
            param("endpoint").or_else(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok());
        let create = match param("create").as_deref() {
            None => endpoint.is_some(),
            Some("true") => true,
            Some("false") => false,
            Some(other) => anyhow::bail!("{url:?}: create={other:?} is not true or false"),
        };
        Ok(Location {
            table,
            region,
            endpoint,
            create,
        })
    }
}

/// One table and the client that reaches it.
#[derive(Clone, Debug)]
pub struct Table {
    pub client: Client,
    pub name: String,
    pub metrics: Arc<Metrics>,
}

/// What a service's table must look like: its partition and sort key (string
/// attributes), and how to create it.
pub struct Schema {
    pub partition_key: &'static str,
    pub sort_key: &'static str,
    /// Fills in the rest of `CreateTable` (attribute definitions, indexes, billing).
    pub create: fn(
        aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
    )
        -> aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
}

impl Table {
    /// Opens the table `url` names, creating it if missing and allowed, and checks its key.
    pub async fn open(url: &str, schema: &Schema) -> Result<Table> {
        let at = Location::parse(url)?;
        let client = Client::from_conf(client_config(&at)?);
        let table = Table {
            client,
            name: at.table.clone(),
            metrics: Default::default(),
        };
        let described = table
            .client
            .describe_table()
            .table_name(&at.table)
            .send()
            .await;
        let description = match described {
            Ok(out) => out.table,
            Err(e) if e.code() == Some("ResourceNotFoundException") && at.create => {
                let create = table
                    .client
                    .create_table()
                    .table_name(&at.table)
                    .key_schema(key(schema.partition_key, KeyType::Hash))
                    .key_schema(key(schema.sort_key, KeyType::Range));
                match (schema.create)(create).send().await {
                    Ok(_) => {}
                    // Another instance made it meanwhile: fine.
                    Err(e) if e.code() == Some("ResourceInUseException") => {}
                    Err(e) => {
                        return Err(anyhow::anyhow!("{}", DisplayErrorContext(e)))
                            .with_context(|| format!("creating DynamoDB table {}", at.table))
                    }
                }
                table.wait_active().await?
            }
            Err(e) => {
                return Err(anyhow::anyhow!("{}", DisplayErrorContext(e))).with_context(|| {
                    format!(
                        "DynamoDB table {} in {}{}",
                        at.table,
                        at.region,
                        if at.create {
                            ""
                        } else {
                            " (not created: add ?create=true to create it)"
                        }
                    )
                })
            }
        };
        let keys: Vec<(String, KeyType)> = description
            .and_then(|d| d.key_schema)
            .unwrap_or_default()
            .into_iter()
            .map(|k| (k.attribute_name, k.key_type))
            .collect();
        let expected = vec![
            (schema.partition_key.to_string(), KeyType::Hash),
            (schema.sort_key.to_string(), KeyType::Range),
        ];
        anyhow::ensure!(
            keys == expected,
            "DynamoDB table {} has key {keys:?}; this service needs {expected:?}",
            at.table
        );
        Ok(table)
    }

    /// Waits (up to a minute) until a table just created is ACTIVE, and describes it.
    async fn wait_active(&self) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>> {
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(out.table);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!(
            "DynamoDB table {} still not ACTIVE after a minute",
            self.name
        )
    }
}

fn key(name: &str, key_type: KeyType) -> aws_sdk_dynamodb::types::KeySchemaElement {
    aws_sdk_dynamodb::types::KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("name and key type are set")
}

/// The client's settings. Credentials come from the environment, as Lambda gives them
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); a local
/// endpoint without them gets placeholder ones (emulators accept any). No profile files
/// or instance metadata: that would take the SDK's aws-config crate, and its build.
fn client_config(at: &Location) -> Result<aws_sdk_dynamodb::Config> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            Credentials::new(id, secret, env("AWS_SESSION_TOKEN"), None, "environment")
        }
        _ if at.endpoint.is_some() => Credentials::new("local", "local", None, None, "local"),
        _ => anyhow::bail!(
            "DynamoDB table {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            at.table
        ),
    };
    use aws_smithy_http_client::tls;
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(https)
        .region(Region::new(at.region.clone()))
        .credentials_provider(credentials);
    if let Some(endpoint) = &at.endpoint {
        config = config.endpoint_url(endpoint);
    }
    Ok(config.build())
}

impl super::Store for Table {
    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    fn sql(&self) -> Option<&super::Db> {
        None
    }
    fn ready(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let out = tokio::time::timeout(
                READY_TIMEOUT,
                self.client.describe_table().table_name(&self.name).send(),
            )
            .await
            .map_err(|_| anyhow::anyhow!("DynamoDB did not answer within {READY_TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("DynamoDB unreachable: {}", DisplayErrorContext(e)))?;
            let status = out.table().and_then(|t| t.table_status());
            anyhow::ensure!(
                matches!(status, Some(TableStatus::Active | TableStatus::Updating)),
                "DynamoDB table {} is {status:?}",
                self.name
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn urls_name_table_region_and_endpoint() {
        let at = Location::parse("dynamodb://taproom-tasks?region=eu-west-1").unwrap();
        assert_eq!(at.table, "taproom-tasks");
        assert_eq!(at.region, "eu-west-1");
        assert!(!at.create, "no endpoint: the table is checked, not created");
        let at =
            Location::parse("dynamodb://Tasks_1?region=us-east-1&endpoint=http://127.0.0.1:8000")
                .unwrap();
        assert_eq!(at.table, "Tasks_1", "table names keep their case");
        assert_eq!(at.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(at.create);
        for bad in [
            "dynamodb://ab?region=x",
            "dynamodb://t$t?region=x",
            "dynamodb://tasks?region=x&create=maybe",
            "postgres://tasks",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
