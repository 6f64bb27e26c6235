// Order history: the caller's orders, newest first within each page.
import type { Order } from "../api/cart";
import { usePages } from "../api/pages";
import { api } from "../api/session";
import { ProblemAlert } from "../components/forms";

export function OrderSummary({ order }: { order: Order }) {
  return (
    <dl className="summary">
      <dt>Items</dt>
      <dd>{order.items.map((i) => `${i.quantity} × ${i.name}`).join(", ") || "none"}</dd>
      <dt>Subtotal</dt>
      <dd>{order.subtotal}</dd>
      {order.promo_code && (
        <>
          <dt>Promo code</dt>
          <dd>{order.promo_code}</dd>
        </>
      )}
      <dt>Discount</dt>
      <dd data-testid="discount">{order.discount}</dd>
      <dt>Total</dt>
      <dd data-testid="total">{order.total}</dd>
    </dl>
  );
}

export function Orders() {
  const { items: orders, problem, more } = usePages((page_token) =>
    api.orders.GET("/v1/orders", { params: { query: { limit: 20, ...(page_token && { page_token }) } } }),
  );

  return (
    <>
      <ProblemAlert problem={problem} />
      {orders && orders.length === 0 && <p>No orders yet. <a href="#/beers">Browse the beers</a>.</p>}
      {orders && orders.length > 0 && (
        <ol className="cards" aria-label="Your orders" reversed>
          {[...orders].reverse().map((order) => (
            <li key={order.id} className="card">
              <h2>
                {order.status === "open" ? "Cart (open)" : `Order of ${new Date(order.closed_at ?? order.created_at).toLocaleString()}`}
              </h2>
              <OrderSummary order={order} />
            </li>
          ))}
        </ol>
      )}
      {more && (
        <button type="button" onClick={more}>
          Load more orders
        </button>
      )}
    </>
  );
}
