//! Database calls as child spans of the work they run for, without a line in any store.
//!
//! sqlx has no per-query hook, but it reports every statement it has run as a `tracing`
//! event (target `sqlx::query`: the statement, rows and elapsed time), at the level its
//! connect options' `log_statements` set, and only when a subscriber wants it. When
//! spans are exported, the process installs [`DbSpans`] as its `tracing` subscriber: it
//! wants that target alone, and only while the work has a span that is exported; each
//! event becomes an OpenTelemetry client span (database conventions), a child of the
//! current span, started `elapsed` before the event. Without an exporter nothing is
//! installed: sqlx sees no subscriber and formats nothing, and its statement logging (to
//! the `log` crate, which has no logger in Taproom) is what it was.
//!
//! SQLite runs statements on a worker thread of its own, where the task-local span
//! ([`trace::current`]) is not. sqlx takes `tracing::Span::current()` along with each
//! command and enters it on that thread; so this subscriber's current span is the
//! task's trace context, held under an id while a `tracing::Span` refers to it, and
//! entering that id on another thread makes it that thread's context.

use super::trace;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{self, Attributes, Id, Record};
use tracing_core::subscriber::{Interest, Subscriber};
use tracing_core::{Event, LevelFilter, Metadata};

/// What sqlx's statement events are logged under.
const TARGET: &str = "sqlx::query";

/// Makes database calls spans, in this process, from now on (idempotent).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if a subscriber is already set (none is, in Taproom).
        let _ = tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(
            DbSpans::default(),
        ));
    });
}

/// The `tracing` subscriber that makes sqlx's statement events spans.
#[derive(Default)]
pub struct DbSpans {
    next: AtomicU64,
    /// Trace contexts that `tracing::Span`s refer to, with how many do.
    held: Mutex<HashMap<u64, (trace::Current, usize)>>,
}

thread_local! {
    /// The ids entered on this thread, innermost last, with the context each stands for.
    static ENTERED: RefCell<Vec<(u64, Option<trace::Current>)>> = const { RefCell::new(Vec::new()) };
}

/// The metadata of every span id this subscriber hands out (they stand for trace
/// contexts, not for `tracing` spans of anyone's making).
struct ContextCallsite;
static CONTEXT_CALLSITE: ContextCallsite = ContextCallsite;
static CONTEXT: Metadata<'static> = tracing_core::metadata! {
    name: "trace context",
    target: "taproom::trace",
    level: tracing_core::Level::TRACE,
    fields: &[],
    callsite: &CONTEXT_CALLSITE,
    kind: tracing_core::metadata::Kind::SPAN,
};

impl tracing_core::Callsite for ContextCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &CONTEXT
    }
}

impl DbSpans {
    fn id(&self) -> u64 {
        // Ids are never 0.
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The exported span this thread works for: the one entered last here (a SQLite
    /// worker's caller's), else the running task's.
    fn context() -> Option<trace::Current> {
        let entered = ENTERED
            .try_with(|e| e.borrow().last().map(|(_, c)| c.clone()))
            .ok()
            .flatten();
        match entered {
            Some(context) => context,
            None => trace::current(),
        }
        .filter(|c| c.exports())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (trace::Current, usize)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Subscriber for DbSpans {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Every other crate's events and spans are never even looked at.
        if metadata.target() == TARGET {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == TARGET && Self::context().is_some()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Statements are logged at whatever level `log_statements` says.
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // sqlx makes no spans under its target; no one else's are enabled.
        Id::from_u64(self.id())
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(current) = Self::context() else {
            return;
        };
        let mut query = Query::default();
        event.record(&mut query);
        query.end(&current);
    }

    fn enter(&self, id: &Id) {
        let context = self.held().get(&id.into_u64()).map(|(c, _)| c.clone());
        let _ = ENTERED.try_with(|e| e.borrow_mut().push((id.into_u64(), context)));
    }

    fn exit(&self, id: &Id) {
        let _ = ENTERED.try_with(|e| {
            let mut entered = e.borrow_mut();
            if let Some(i) = entered.iter().rposition(|(x, _)| *x == id.into_u64()) {
                entered.remove(i);
            }
        });
    }

    fn current_span(&self) -> span::Current {
        let entered = ENTERED
            .try_with(|e| e.borrow().last().map(|(id, _)| *id))
            .ok()
            .flatten();
        if let Some(id) = entered {
            return span::Current::new(Id::from_u64(id), &CONTEXT);
        }
        match trace::current().filter(|c| c.exports()) {
            Some(context) => {
                // `Span::current()` takes a reference at once (`clone_span`).
                let id = self.id();
                self.held().insert(id, (context, 0));
                span::Current::new(Id::from_u64(id), &CONTEXT)
            }
            None => span::Current::none(),
        }
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some((_, refs)) = self.held().get_mut(&id.into_u64()) {
            *refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut held = self.held();
        let Some((_, refs)) = held.get_mut(&id.into_u64()) else {
            return false;
        };
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            held.remove(&id.into_u64());
            return true;
        }
        false
    }
}

/// One statement as sqlx reports it.
#[derive(Default)]
struct Query {
    /// Its first words (the whole statement when short).
    summary: String,
    /// The whole statement when longer than its summary, else empty.
    statement: String,
    elapsed: f64,
    rows_returned: Option<u64>,
}

impl Visit for Query {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows_returned = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl Query {
    /// The client span of the statement, ended now, as a child of `parent`.
    fn end(self, parent: &trace::Current) {
        let text = match self.statement.trim() {
            "" => self.summary,
            whole => whole.to_string(),
        };
        let (operation, collection) = operation(&text);
        let name = match &collection {
            Some(table) => format!("{operation} {table}"),
            None => operation.clone(),
        };
        let mut span = parent.child(name, SpanKind::Client);
        let elapsed = Duration::try_from_secs_f64(self.elapsed).unwrap_or_default();
        span.started_at(SystemTime::now() - elapsed);
        // SQLite runs statements on worker threads that sqlx names; PostgreSQL in the task.
        let system = match std::thread::current().name() {
            Some(name) if name.starts_with("sqlx-sqlite-worker") => "sqlite",
            _ => "postgresql",
        };
        span.set_attribute(|| KeyValue::new("db.system.name", system));
        // The names before OpenTelemetry's database conventions 1.26, which many
        // backends still read.
        span.set_attribute(|| KeyValue::new("db.system", system));
        span.set_attribute(|| KeyValue::new("db.operation.name", operation));
        if let Some(table) = collection {
            span.set_attribute(|| KeyValue::new("db.collection.name", table));
        }
        if let Some(rows) = self.rows_returned {
            span.set_attribute(|| KeyValue::new("db.response.returned_rows", rows as i64));
        }
        // The text as written: values are bound as parameters ($1…), never in it.
        span.set_attribute(|| KeyValue::new("db.statement", text.clone()));
        span.set_attribute(|| KeyValue::new("db.query.text", text));
        span.end(None);
    }
}

/// A statement's operation (its first word, upper case) and the table it names first,
/// when it is one of `SELECT … FROM t`, `INSERT INTO t`, `UPDATE t`, `DELETE FROM t`.
fn operation(sql: &str) -> (String, Option<String>) {
    let mut words = sql.split_whitespace();
    let operation = words.next().unwrap_or("").to_ascii_uppercase();
    let after = match operation.as_str() {
        "SELECT" | "DELETE" => Some("FROM"),
        "INSERT" => Some("INTO"),
        "UPDATE" => None,
        _ => return (operation, None),
    };
    let table = match after {
        Some(keyword) => words
            .skip_while(|w| !w.eq_ignore_ascii_case(keyword))
            .nth(1),
        None => words.next(),
    };
    let table = table
        .map(|t| {
            t.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .to_string()
        })
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("OR"));
    (operation, table)
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn names_the_operation_and_its_table() {
        let named = |sql: &str| {
            let (op, table) = operation(sql);
            format!("{op} {}", table.unwrap_or_default())
        };
        assert_eq!(
            named("SELECT id, name FROM beers WHERE id = $1"),
            "SELECT beers"
        );
        assert_eq!(
            named("insert into order_items (order_id) VALUES ($1)"),
            "INSERT order_items"
        );
        assert_eq!(named("UPDATE orders SET status = $1"), "UPDATE orders");
        assert_eq!(named("DELETE FROM \"sessions\" WHERE x"), "DELETE sessions");
        assert_eq!(named("SELECT 1"), "SELECT ");
        assert_eq!(named("PRAGMA busy_timeout = 5000"), "PRAGMA ");
        assert_eq!(named("BEGIN"), "BEGIN ");
    }
}
