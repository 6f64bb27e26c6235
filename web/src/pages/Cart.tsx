// The cart (the open order) and checkout with an optional promo code. Checkout sends an
// Idempotency-Key, kept until it succeeds, so a retry after a lost answer never charges
// twice; and, without a code, the total the page shows as `expected_total`, so a cart
// changed elsewhere is refused rather than charged at a price nobody saw.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { findCart, type Order } from "../api/cart";
import type { Problem } from "../api/problem";
import { api, call } from "../api/session";
import { Field, ProblemAlert } from "../components/forms";
import { OrderSummary } from "./Orders";

export function Cart() {
  const [order, setOrder] = useState<Order | null | undefined>(undefined);
  const [placed, setPlaced] = useState<Order | null>(null);
  const [promo, setPromo] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const idempotencyKey = useRef<string | null>(null);

  useEffect(() => {
    void findCart().then((r) => {
      setProblem(r.problem);
      setOrder(r.problem ? null : r.data);
    });
  }, []);

  async function remove(beer_id: string) {
    if (!order) return;
    const order_id = order.id;
    const r = await call(() =>
      api.orders.DELETE("/v1/orders/{order_id}/items/{beer_id}", { params: { path: { order_id, beer_id } } }),
    );
    setProblem(r.problem);
    if (r.data) setOrder(r.data);
  }

  async function checkout(e: FormEvent) {
    e.preventDefault();
    if (!order) return;
    setBusy(true);
    idempotencyKey.current ??= crypto.randomUUID();
    const key = idempotencyKey.current;
    const order_id = order.id;
    const code = promo.trim();
    const r = await call(() =>
      api.orders.POST("/v1/orders/{order_id}/checkout", {
        params: { path: { order_id }, header: { "Idempotency-Key": key } },
        // The service compares expected_total with the total after the discount, which
        // only it knows for a code: send it without one.
        body: code ? { promo_code: code } : { expected_total: order.total },
      }),
    );
    setBusy(false);
    setProblem(r.problem);
    if (r.data) {
      idempotencyKey.current = null;
      setPlaced(r.data);
      setOrder(null);
    } else if (r.problem.status !== 0 && r.problem.status < 500) {
      // Refused for good (bad code, changed cart): the next try is a new request.
      idempotencyKey.current = null;
    }
  }

  if (placed) {
    return (
      <section aria-labelledby="placed-title">
        <h2 id="placed-title">Thank you! Your order is placed.</h2>
        <OrderSummary order={placed} />
        <p>
          <a href="#/orders">See your orders</a> or <a href="#/beers">keep shopping</a>.
        </p>
      </section>
    );
  }
  if (order === undefined) return <p role="status">Loading your cart…</p>;
  if (!order || order.items.length === 0) {
    return (
      <>
        <ProblemAlert problem={problem} />
        <p>Your cart is empty. <a href="#/beers">Browse the beers</a>.</p>
      </>
    );
  }
  return (
    <>
      <table>
        <caption>Your cart</caption>
        <thead>
          <tr>
            <th scope="col">Beer</th>
            <th scope="col">Quantity</th>
            <th scope="col">Price</th>
            <th scope="col">Total</th>
            <th scope="col"><span className="visually-hidden">Actions</span></th>
          </tr>
        </thead>
        <tbody>
          {order.items.map((item) => (
            <tr key={item.beer_id}>
              <th scope="row">{item.name}</th>
              <td>{item.quantity}</td>
              <td>{item.unit_price}</td>
              <td>{item.line_total}</td>
              <td>
                <button type="button" className="secondary" onClick={() => void remove(item.beer_id)}>
                  Remove<span className="visually-hidden"> {item.name}</span>
                </button>
              </td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row" colSpan={3}>Subtotal</th>
            <td data-testid="subtotal">{order.subtotal}</td>
            <td />
          </tr>
        </tfoot>
      </table>
      <form onSubmit={checkout} noValidate>
        <ProblemAlert problem={problem} fields={["promo_code"]} />
        <Field form="checkout" name="promo_code" label="Promo code (optional)" problem={problem} value={promo}
          onChange={(e) => setPromo(e.target.value)} autoComplete="off" />
        <button type="submit" disabled={busy}>Check out</button>
      </form>
    </>
  );
}
