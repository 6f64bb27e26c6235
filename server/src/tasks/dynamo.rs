//! Tasks in a DynamoDB table (feature `aws`). Every operation of the tasks API is one key
//! lookup or one `Query`, never a `Scan`:
//!
//! - partition key `owner` (the user id), sort key `id` (the task's UUIDv7 as text, so
//!   key order is creation order, as on SQL): a user's page is a `Query` on the owner
//!   from the page token's id onwards;
//! - local secondary index `done_id` (same partition, sort key `"0#<id>"` or `"1#<id>"`):
//!   `?done=` pages are a `Query` on that index between `"<done>#<after>"` and
//!   `"<done>$"`, still in id order;
//! - reads are strongly consistent (a task read right after it is written is there);
//!   updates and deletes are conditional on the item existing under that owner, so
//!   another user's task is as missing as a deleted one, and an update never recreates a
//!   task deleted meanwhile.

use super::store::Changes;
use crate::runtime::db::{now_text, parse_time, StoreError};
use crate::runtime::dynamo::{Schema, Table};
use crate::runtime::pagination::Window;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, LocalSecondaryIndex, Projection,
    ProjectionType, ReturnValue, ScalarAttributeType,
};
use std::collections::HashMap;
use taproom_client::tasks::types;
use uuid::Uuid;

const DONE_INDEX: &str = "done_id";

type Item = HashMap<String, AttributeValue>;

/// The tasks table: created (locally) with its key, its index and on-demand billing.
pub static SCHEMA: Schema = Schema {
    partition_key: "owner",
    sort_key: "id",
    create: |create| {
        let string = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, key_type| {
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("name and key type are set")
        };
        create
            .attribute_definitions(string("owner"))
            .attribute_definitions(string("id"))
            .attribute_definitions(string(DONE_INDEX))
            .local_secondary_indexes(
                LocalSecondaryIndex::builder()
                    .index_name(DONE_INDEX)
                    .key_schema(key("owner", aws_sdk_dynamodb::types::KeyType::Hash))
                    .key_schema(key(DONE_INDEX, aws_sdk_dynamodb::types::KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("name, key and projection are set"),
            )
            .billing_mode(BillingMode::PayPerRequest)
    },
};

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Db(anyhow::anyhow!("DynamoDB: {}", DisplayErrorContext(e)))
}

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn done_id(done: bool, id: &str) -> String {
    format!("{}#{id}", u8::from(done))
}

fn key(owner: Uuid, id: Uuid) -> Item {
    HashMap::from([
        ("owner".to_string(), s(owner.to_string())),
        ("id".to_string(), s(id.to_string())),
    ])
}

fn to_task(item: &Item) -> Result<types::Task, StoreError> {
    let text = |name: &str| -> Result<&String, StoreError> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Db(anyhow::anyhow!("stored task has no {name}")))
    };
    let id = text("id")?;
    Ok(types::Task {
        id: Uuid::parse_str(id)
            .map_err(|e| StoreError::Db(anyhow::anyhow!("stored id {id:?}: {e}")))?,
        title: text("title")?.clone(),
        description: item
            .get("description")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        done: *item
            .get("done")
            .and_then(|v| v.as_bool().ok())
            .ok_or_else(|| StoreError::Db(anyhow::anyhow!("stored task has no done")))?,
        created_at: parse_time(text("created_at")?)?,
        updated_at: parse_time(text("updated_at")?)?,
    })
}

pub async fn create(
    table: &Table,
    owner: Uuid,
    title: &str,
    description: Option<&str>,
) -> Result<types::Task, StoreError> {
    let id = Uuid::now_v7().to_string();
    let now = now_text();
    let mut item = HashMap::from([
        ("owner".to_string(), s(owner.to_string())),
        ("id".to_string(), s(&id)),
        ("title".to_string(), s(title)),
        ("done".to_string(), AttributeValue::Bool(false)),
        (DONE_INDEX.to_string(), s(done_id(false, &id))),
        ("created_at".to_string(), s(&now)),
        ("updated_at".to_string(), s(&now)),
    ]);
    if let Some(d) = description {
        item.insert("description".into(), s(d));
    }
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item.clone()))
        // A fresh UUIDv7 never collides; the condition makes sure a write never replaces.
        .condition_expression("attribute_not_exists(id)")
        .send()
        .await
        .map_err(failed)?;
    to_task(&item)
}

pub async fn get(table: &Table, owner: Uuid, id: Uuid) -> Result<types::Task, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(key(owner, id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(failed)?;
    out.item.as_ref().map(to_task).unwrap_or(Err(StoreError::NotFound))
}

/// The owner's tasks of one page `window`, in id order, optionally only those whose
/// `done` matches: one `Query` (more only when DynamoDB cuts a page at 1 MB).
pub async fn list(
    table: &Table,
    owner: Uuid,
    done: Option<bool>,
    window: &Window,
) -> Result<Vec<types::Task>, StoreError> {
    let after = window.after.map(|u| u.to_string());
    let wanted = usize::try_from(window.fetch_limit()).unwrap_or(usize::MAX);
    let mut values = HashMap::from([(":o".to_string(), s(owner.to_string()))]);
    let (index, condition) = match (done, &after) {
        (None, None) => (None, "#o = :o"),
        (None, Some(after)) => {
            values.insert(":after".into(), s(after));
            (None, "#o = :o AND #k > :after")
        }
        (Some(done), after) => {
            // BETWEEN is inclusive: the page token's own task, if still there, is dropped
            // below. `$` sorts right after `#`, so `"<d>$"` bounds every `"<d>#…"`.
            let flag = u8::from(done);
            values.insert(
                ":lo".into(),
                s(done_id(done, after.as_deref().unwrap_or_default())),
            );
            values.insert(":hi".into(), s(format!("{flag}$")));
            (Some(DONE_INDEX), "#o = :o AND #k BETWEEN :lo AND :hi")
        }
    };
    let mut names = HashMap::from([("#o".to_string(), "owner".to_string())]);
    if condition.contains("#k") {
        names.insert("#k".into(), index.unwrap_or("id").to_string());
    }
    let mut tasks = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = table
            .client
            .query()
            .table_name(&table.name)
            .set_index_name(index.map(str::to_string))
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names.clone()))
            .set_expression_attribute_values(Some(values.clone()))
            .consistent_read(true)
            .limit(i32::try_from(wanted + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(failed)?;
        for item in out.items() {
            let task = to_task(item)?;
            if Some(task.id) != window.after {
                tasks.push(task);
            }
        }
        match out.last_evaluated_key {
            Some(last) if tasks.len() < wanted => start = Some(last),
            _ => break,
        }
    }
    tasks.truncate(wanted);
    Ok(tasks)
}

pub async fn update(
    table: &Table,
    owner: Uuid,
    id: Uuid,
    changes: Changes,
) -> Result<types::Task, StoreError> {
    // One conditional UpdateItem: concurrent partial updates of different fields do not
    // undo each other, and a missing (or another owner's) task is not recreated.
    let mut set = vec!["updated_at = :now"];
    let mut remove = Vec::new();
    let mut values = HashMap::from([(":now".to_string(), s(now_text()))]);
    if let Some(title) = changes.title {
        set.push("title = :title");
        values.insert(":title".into(), s(title));
    }
    match changes.description {
        Some(Some(d)) => {
            set.push("description = :desc");
            values.insert(":desc".into(), s(d));
        }
        Some(None) => remove.push("description"),
        None => {}
    }
    if let Some(done) = changes.done {
        set.push("done = :done");
        set.push("done_id = :done_id");
        values.insert(":done".into(), AttributeValue::Bool(done));
        values.insert(":done_id".into(), s(done_id(done, &id.to_string())));
    }
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(key(owner, id)))
        .update_expression(expression)
        .condition_expression("attribute_exists(id)")
        .set_expression_attribute_values(Some(values))
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    match out {
        Ok(out) => out
            .attributes
            .as_ref()
            .map(to_task)
            .unwrap_or(Err(StoreError::NotFound)),
        Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
        Err(e) => Err(failed(e)),
    }
}

pub async fn delete(table: &Table, owner: Uuid, id: Uuid) -> Result<(), StoreError> {
    let out = table
        .client
        .delete_item()
        .table_name(&table.name)
        .set_key(Some(key(owner, id)))
        .condition_expression("attribute_exists(id)")
        .send()
        .await;
    match out {
        Ok(_) => Ok(()),
        Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
        Err(e) => Err(failed(e)),
    }
}

fn is_condition_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}
