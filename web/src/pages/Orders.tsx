// Order history: the caller's orders, newest first within each page.
import { useEffect, useState } from "react";
import type { Order } from "../api/cart";
import type { Problem } from "../api/problem";
import { api, call } from "../api/session";
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
  const [orders, setOrders] = useState<Order[] | null>(null);
  const [next, setNext] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | null>(null);

  async function load(page_token?: string) {
    const r = await call(() =>
      api.orders.GET("/v1/orders", { params: { query: { limit: 20, ...(page_token && { page_token }) } } }),
    );
    setProblem(r.problem);
    if (r.data) {
      const items = r.data.items;
      setOrders((prev) => (page_token && prev ? [...prev, ...items] : items));
      setNext(r.data.next_page_token);
    }
  }

  useEffect(() => {
    void load();
  }, []);

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
      {next && (
        <button type="button" onClick={() => void load(next)}>
          Load more orders
        </button>
      )}
    </>
  );
}
