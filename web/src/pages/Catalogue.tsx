// The catalogue: public, searched by name, a page at a time (keyset pages: the service
// hands out the next page's token, so going back keeps the tokens seen).
import { useEffect, useState, type FormEvent } from "react";
import type * as sdk from "../api/generated";
import { addToCart } from "../api/cart";
import type { Problem } from "../api/problem";
import { anonymous, call, signedIn } from "../api/session";
import { ProblemAlert } from "../components/forms";

type Beer = sdk.beers.components["schemas"]["Beer"];
const PAGE_SIZE = 10;

export function Catalogue() {
  const [query, setQuery] = useState("");
  const [search, setSearch] = useState("");
  // Tokens of the pages before this one; the last is this page's.
  const [tokens, setTokens] = useState<(string | undefined)[]>([undefined]);
  const [beers, setBeers] = useState<Beer[] | null>(null);
  const [next, setNext] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");
  const page_token = tokens[tokens.length - 1];

  useEffect(() => {
    let stale = false;
    void call(() =>
      anonymous.beers.GET("/v1/beers", {
        params: { query: { limit: PAGE_SIZE, ...(search && { q: search }), ...(page_token && { page_token }) } },
      }),
    ).then((r) => {
      if (stale) return;
      setProblem(r.problem);
      setBeers(r.data?.items ?? null);
      setNext(r.data?.next_page_token);
    });
    return () => {
      stale = true;
    };
  }, [search, page_token]);

  function submit(e: FormEvent) {
    e.preventDefault();
    setTokens([undefined]);
    setSearch(query.trim());
  }

  async function add(beer: Beer) {
    setStatus("");
    const r = await addToCart(beer.id, 1);
    setProblem(r.problem);
    if (!r.problem) setStatus(`${beer.name} is in your cart.`);
  }

  return (
    <>
      <form role="search" onSubmit={submit} className="inline">
        <label htmlFor="beer-search">Search beers by name</label>
        <input id="beer-search" type="search" value={query} onChange={(e) => setQuery(e.target.value)} />
        <button type="submit">Search</button>
      </form>
      <ProblemAlert problem={problem} />
      <p role="status" className="status">{status}</p>
      {beers && beers.length === 0 && <p>No beers match.</p>}
      {beers && beers.length > 0 && (
        <ul className="cards" aria-label="Beers">
          {beers.map((beer) => (
            <li key={beer.id} className="card">
              <h2>{beer.name}</h2>
              <p className="muted">
                {beer.style ? `${beer.style} · ` : ""}SKU {beer.sku}
              </p>
              <p className="price">{beer.price}</p>
              {signedIn() ? (
                <button type="button" onClick={() => void add(beer)}>
                  Add to cart<span className="visually-hidden">: {beer.name}</span>
                </button>
              ) : (
                <a href="#/login">Sign in to order</a>
              )}
            </li>
          ))}
        </ul>
      )}
      <nav aria-label="Pages" className="pager">
        <button type="button" disabled={tokens.length < 2} onClick={() => setTokens(tokens.slice(0, -1))}>
          Previous page
        </button>
        <span>Page {tokens.length}</span>
        <button type="button" disabled={!next} onClick={() => setTokens([...tokens, next])}>
          Next page
        </button>
      </nav>
    </>
  );
}
