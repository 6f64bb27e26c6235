//! The orders database. Every change to an order first updates its row on the
//! condition that it is still open, inside the change's transaction: that row is the
//! lock that orders item changes and checkout, so nothing slips into a closed order and
//! of concurrent checkouts exactly one closes it.

use crate::runtime::db::{
    is_unique_violation, now_text, parse_time, time_column, time_text, uuid_column, Db, StoreError,
};
use crate::runtime::pagination::Window;
use crate::runtime::money::format_cents;
use sqlx::Row;
use taproom_client::orders::types;
use uuid::Uuid;

/// An order with its items, oldest item first: one query, whatever the page size.
macro_rules! orders_with_items {
    ($where:literal) => {
        concat!(
            "SELECT o.id, o.user_id, o.status, o.discount_cents, o.promo_code, o.created_at, o.updated_at, o.closed_at, \
               i.beer_id, i.sku, i.name, i.unit_price_cents, i.quantity \
             FROM (SELECT * FROM orders WHERE ",
            $where,
            ") o LEFT JOIN order_items i ON i.order_id = o.id ORDER BY o.id, i.added_id"
        )
    };
}

/// Why a change to an order was refused.
#[derive(Debug)]
pub enum Refused {
    NotFound,
    Closed,
    /// A store failure.
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Store(e.into())
    }
}

/// Orders from rows of `orders_with_items!`, in row order.
fn to_orders(rows: &[sqlx::any::AnyRow]) -> Result<Vec<types::Order>, StoreError> {
    let mut orders: Vec<(types::Order, i64, i64)> = Vec::new();
    for row in rows {
        let id = uuid_column(row, "id")?;
        if orders.last().map(|(o, _, _)| o.id) != Some(id) {
            let status = match row.try_get::<String, _>("status")?.as_str() {
                "closed" => types::OrderStatus::Closed,
                _ => types::OrderStatus::Open,
            };
            let closed_at: Option<String> = row.try_get("closed_at")?;
            let order = types::Order {
                id,
                user_id: uuid_column(row, "user_id")?,
                status,
                items: Vec::new(),
                subtotal: money(0),
                discount: money(0),
                total: money(0),
                created_at: time_column(row, "created_at")?,
                updated_at: time_column(row, "updated_at")?,
                closed_at: closed_at.as_deref().map(parse_time).transpose()?,
                promo_code: row.try_get("promo_code")?,
            };
            orders.push((order, 0, row.try_get("discount_cents")?));
        }
        // An order without items has one row, with no item columns.
        if row.try_get::<Option<String>, _>("beer_id")?.is_none() {
            continue;
        }
        let (order, subtotal, _) = orders.last_mut().expect("pushed above");
        let unit: i64 = row.try_get("unit_price_cents")?;
        let quantity: i64 = row.try_get::<i64, _>("quantity")?;
        *subtotal += unit * quantity;
        order.items.push(types::OrderItem {
            beer_id: uuid_column(row, "beer_id")?,
            sku: row.try_get("sku")?,
            name: row.try_get("name")?,
            unit_price: money(unit),
            quantity: u32::try_from(quantity).map_err(|e| anyhow::anyhow!("{e}"))?,
            line_total: money(unit * quantity),
        });
    }
    Ok(orders
        .into_iter()
        .map(|(mut order, subtotal, discount)| {
            order.subtotal = money(subtotal);
            order.discount = money(discount);
            order.total = money(subtotal - discount);
            order
        })
        .collect())
}

fn money(cents: i64) -> types::Money {
    types::Money::try_from(format_cents(cents)).expect("formatted cents match the Money pattern")
}

pub async fn create(db: &Db, user_id: Uuid) -> Result<types::Order, StoreError> {
    let id = Uuid::now_v7();
    let now = now_text();
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, discount_cents, created_at, updated_at) \
         VALUES ($1, $2, 'open', 0, $3, $3)",
    )
    .bind(id.to_string())
    .bind(user_id.to_string())
    .bind(&now)
    .execute(&db.pool)
    .await?;
    get(db, id).await
}

pub async fn get(db: &Db, id: Uuid) -> Result<types::Order, StoreError> {
    let rows = sqlx::query(orders_with_items!("id = $1"))
        .bind(id.to_string())
        .fetch_all(&db.pool)
        .await?;
    to_orders(&rows)?.pop().ok_or(StoreError::NotFound)
}

/// The orders of one page `window` in id order: `user`'s, or everyone's when `None`;
/// only those in `status` when given.
pub async fn list(
    db: &Db,
    user: Option<Uuid>,
    status: Option<&str>,
    window: &Window,
) -> Result<Vec<types::Order>, StoreError> {
    let rows = sqlx::query(orders_with_items!(
        "($1 = '' OR user_id = $1) AND ($2 = '' OR status = $2) AND id > $3 ORDER BY id LIMIT $4"
    ))
    .bind(user.map(|u| u.to_string()).unwrap_or_default())
    .bind(status.unwrap_or(""))
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    to_orders(&rows)
}

/// Within `tx`: marks the order changed if it is still open (taking its row lock), or
/// says why not.
async fn lock_open(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: Uuid,
    now: &str,
) -> Result<(), Refused> {
    let done = sqlx::query("UPDATE orders SET updated_at = $2 WHERE id = $1 AND status = 'open'")
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let exists = sqlx::query("SELECT 1 FROM orders WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    Err(if exists.is_some() {
        Refused::Closed
    } else {
        Refused::NotFound
    })
}

/// What an item is made from: the beer as the catalogue had it.
pub struct Snapshot {
    pub beer_id: Uuid,
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
}

/// Adds `quantity` of the beer to an open order (to its existing item, if any; that
/// item keeps the price it was first added at). `Ok(false)`: the item would exceed 100.
pub async fn add_item(
    db: &Db,
    order_id: Uuid,
    beer: &Snapshot,
    quantity: u32,
) -> Result<bool, Refused> {
    let mut tx = db.pool.begin().await?;
    let now = now_text();
    lock_open(&mut tx, order_id, &now).await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT quantity FROM order_items WHERE order_id = $1 AND beer_id = $2")
            .bind(order_id.to_string())
            .bind(beer.beer_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    let quantity = i64::from(quantity);
    match current {
        Some(q) if q + quantity > 100 => return Ok(false),
        Some(_) => {
            sqlx::query(
                "UPDATE order_items SET quantity = quantity + $3 WHERE order_id = $1 AND beer_id = $2",
            )
            .bind(order_id.to_string())
            .bind(beer.beer_id.to_string())
            .bind(quantity)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO order_items (order_id, beer_id, sku, name, unit_price_cents, quantity, added_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(order_id.to_string())
            .bind(beer.beer_id.to_string())
            .bind(&beer.sku)
            .bind(&beer.name)
            .bind(beer.unit_price_cents)
            .bind(quantity)
            .bind(Uuid::now_v7().to_string())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Takes the beer's item out of an open order. `Ok(false)`: the order has no such item.
pub async fn remove_item(db: &Db, order_id: Uuid, beer_id: Uuid) -> Result<bool, Refused> {
    let mut tx = db.pool.begin().await?;
    lock_open(&mut tx, order_id, &now_text()).await?;
    let done = sqlx::query("DELETE FROM order_items WHERE order_id = $1 AND beer_id = $2")
        .bind(order_id.to_string())
        .bind(beer_id.to_string())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// A stored first answer to an idempotency key.
pub struct Replay {
    pub fingerprint: String,
    pub response: String,
}

/// Keys stored before this have expired (`keep`: IDEMPOTENCY_RETENTION_SECS); the
/// periodic pruning deletes them, and until then they are ignored.
fn key_cutoff(keep: std::time::Duration) -> String {
    time_text(
        chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| chrono::Utc::now().checked_sub_signed(keep))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

pub async fn replay(
    db: &Db,
    user_id: Uuid,
    key: &str,
    keep: std::time::Duration,
) -> Result<Option<Replay>, StoreError> {
    let row = sqlx::query(
        "SELECT fingerprint, response FROM idempotency_keys \
         WHERE user_id = $1 AND idem_key = $2 AND created_at > $3",
    )
    .bind(user_id.to_string())
    .bind(key)
    .bind(key_cutoff(keep))
    .fetch_optional(&db.pool)
    .await?;
    Ok(match row {
        Some(row) => Some(Replay {
            fingerprint: row.try_get("fingerprint")?,
            response: row.try_get("response")?,
        }),
        None => None,
    })
}

/// What a checkout is refused for, beyond `Refused`.
#[derive(Debug)]
pub enum CheckoutRefused {
    Order(Refused),
    Empty,
    /// The total is not the one the client expected; carries the actual total.
    TotalChanged(String),
    /// Another request stored an answer for this idempotency key first.
    KeyTaken,
    /// The user has used the promo code as often as it allows.
    PromoUsedUp,
}

/// A promo code to apply, as promotions described it.
pub struct Promo<'a> {
    pub code: &'a str,
    pub percent_off: u32,
    pub max_uses: u32,
}

/// `percent` of `cents`, rounded half up to the cent.
pub fn percent_of(cents: i64, percent: u32) -> i64 {
    (cents * i64::from(percent) + 50) / 100
}

impl From<Refused> for CheckoutRefused {
    fn from(e: Refused) -> Self {
        CheckoutRefused::Order(e)
    }
}

impl From<StoreError> for CheckoutRefused {
    fn from(e: StoreError) -> Self {
        CheckoutRefused::Order(Refused::Store(e))
    }
}

impl From<sqlx::Error> for CheckoutRefused {
    fn from(e: sqlx::Error) -> Self {
        CheckoutRefused::Order(e.into())
    }
}

/// An idempotency key to record with a checkout: (user, key, fingerprint).
pub struct KeyRecord<'a> {
    pub user_id: Uuid,
    pub key: &'a str,
    pub fingerprint: &'a str,
    /// How long keys are remembered: an expired record of the same key is replaced.
    pub keep: std::time::Duration,
}

/// Closes an open, non-empty order, in one transaction with: the use of its promo code
/// (refused past the code's limit for the order's user, however many checkouts race),
/// the `order.placed` event in the outbox, and the idempotency record of its answer.
/// `expected_total` (cents), when given, must be the order's total.
pub async fn checkout(
    db: &Db,
    order_id: Uuid,
    expected_total: Option<i64>,
    promo: Option<Promo<'_>>,
    key: Option<KeyRecord<'_>>,
) -> Result<types::Order, CheckoutRefused> {
    let mut tx = db.pool.begin().await?;
    let now = now_text();
    lock_open(&mut tx, order_id, &now).await?;
    let subtotal: Option<i64> = sqlx::query_scalar(
        // PostgreSQL sums BIGINT as NUMERIC; both databases cast it back.
        "SELECT CAST(SUM(unit_price_cents * quantity) AS BIGINT) FROM order_items WHERE order_id = $1",
    )
    .bind(order_id.to_string())
    .fetch_one(&mut *tx)
    .await?;
    let Some(subtotal) = subtotal else {
        return Err(CheckoutRefused::Empty);
    };
    let discount = match &promo {
        Some(promo) => {
            let user: String = sqlx::query_scalar("SELECT user_id FROM orders WHERE id = $1")
                .bind(order_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO promo_uses (user_id, code, uses) VALUES ($1, $2, 0) \
                 ON CONFLICT (user_id, code) DO NOTHING",
            )
            .bind(&user)
            .bind(promo.code)
            .execute(&mut *tx)
            .await?;
            // The row lock makes racing checkouts of one user's code take turns here.
            let counted = sqlx::query(
                "UPDATE promo_uses SET uses = uses + 1 WHERE user_id = $1 AND code = $2 AND uses < $3",
            )
            .bind(&user)
            .bind(promo.code)
            .bind(i64::from(promo.max_uses))
            .execute(&mut *tx)
            .await?;
            if counted.rows_affected() == 0 {
                return Err(CheckoutRefused::PromoUsedUp);
            }
            percent_of(subtotal, promo.percent_off)
        }
        None => 0,
    };
    sqlx::query(
        "UPDATE orders SET status = 'closed', closed_at = $2, discount_cents = $3, promo_code = $4 WHERE id = $1",
    )
    .bind(order_id.to_string())
    .bind(&now)
    .bind(discount)
    .bind(promo.as_ref().map(|p| p.code))
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query(orders_with_items!("id = $1"))
        .bind(order_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let order = to_orders(&rows)?
        .pop()
        .ok_or(CheckoutRefused::Order(Refused::NotFound))?;
    if let Some(expected) = expected_total {
        if format_cents(expected) != order.total.to_string() {
            return Err(CheckoutRefused::TotalChanged(order.total.to_string()));
        }
    }
    if let Some(key) = key {
        // Expired keys are left to the periodic pruning (runtime::retention), not deleted
        // here under the order's lock; only an expired record of this very key is
        // replaced. A live one means another request stored its answer first.
        let response = serde_json::to_string(&order).map_err(|e| StoreError::Db(e.into()))?;
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, response, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint, \
               response = excluded.response, created_at = excluded.created_at \
             WHERE idempotency_keys.created_at <= $6",
        )
        .bind(key.user_id.to_string())
        .bind(key.key)
        .bind(key.fingerprint)
        .bind(response)
        .bind(&now)
        .bind(key_cutoff(key.keep))
        .execute(&mut *tx)
        .await;
        match stored {
            Err(e) if is_unique_violation(&e) => return Err(CheckoutRefused::KeyTaken),
            Ok(done) if done.rows_affected() == 0 => return Err(CheckoutRefused::KeyTaken),
            other => {
                other?;
            }
        }
    }
    let event = placed_event(&order, &now)?;
    crate::runtime::outbox::enqueue(
        &mut tx,
        event.id,
        "order.placed",
        &serde_json::to_string(&event).map_err(|e| StoreError::Db(e.into()))?,
    )
    .await?;
    tx.commit().await?;
    Ok(order)
}

/// The `order.placed` event for a closed order, in promotions' `Event` shape.
fn placed_event(
    order: &types::Order,
    now: &str,
) -> Result<taproom_client::promotions::types::Event, StoreError> {
    use taproom_client::promotions::types as p;
    let promo_code = order
        .promo_code
        .as_deref()
        .map(str::parse::<p::PromoCode>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored promo code: {e}"))?;
    Ok(p::Event {
        id: Uuid::now_v7(),
        type_: p::EventType::OrderPlaced,
        occurred_at: parse_time(now)?,
        order: p::PlacedOrder {
            order_id: order.id,
            user_id: order.user_id,
            promo_code,
            total: order
                .total
                .parse()
                .map_err(|e| anyhow::anyhow!("order total: {e}"))?,
        },
    })
}
