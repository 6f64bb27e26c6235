// The cart is the caller's open order (orders service): found again after a reload, made
// when the first beer goes in, closed by checkout.
import type * as sdk from "./generated";
import { api, call } from "./session";

export type Order = sdk.orders.components["schemas"]["Order"];

/** The open order, if there is one. */
export function findCart() {
  return call(() => api.orders.GET("/v1/orders", { params: { query: { status: "open", limit: 1 } } })).then(
    (r) => (r.problem ? r : { data: r.data.items[0] ?? null, problem: null }),
  );
}

/** Adds `quantity` of a beer to the open order, opening one if needed. */
export async function addToCart(beer_id: string, quantity: number) {
  const found = await findCart();
  if (found.problem) return found;
  let order = found.data;
  if (!order) {
    const created = await call(() => api.orders.POST("/v1/orders"));
    if (created.problem) return created;
    order = created.data;
  }
  const order_id = order.id;
  return call(() =>
    api.orders.POST("/v1/orders/{order_id}/items", {
      params: { path: { order_id } },
      body: { beer_id, quantity },
    }),
  );
}
