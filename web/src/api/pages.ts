// Keyset-paginated lists (`items` and `next_page_token`), read whole or a page at a time.
import { useEffect, useState } from "react";
import type { Problem } from "./problem";
import { call } from "./session";

/** One page of a list, by the typed clients: the first page without a token. */
export type PageCall<T> = (page_token?: string) => Promise<{
  data?: { items: T[]; next_page_token?: string };
  error?: unknown;
  response: Response;
}>;

/** Every item of a list, walking its pages; or the first problem. */
export async function everyPage<T>(
  page: PageCall<T>,
): Promise<{ data: T[]; problem: null } | { data: null; problem: Problem }> {
  const all: T[] = [];
  let page_token: string | undefined;
  do {
    const r = await call(() => page(page_token));
    if (r.problem) return r;
    all.push(...r.data.items);
    page_token = r.data.next_page_token;
  } while (page_token);
  return { data: all, problem: null };
}

/** The first page on mount, and `more` (while there is more) to append the next one. */
export function usePages<T>(page: PageCall<T>) {
  const [items, setItems] = useState<T[] | null>(null);
  const [next, setNext] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | null>(null);

  async function load(page_token?: string) {
    const r = await call(() => page(page_token));
    setProblem(r.problem);
    if (r.data) {
      const items = r.data.items;
      setItems((prev) => (page_token && prev ? [...prev, ...items] : items));
      setNext(r.data.next_page_token);
    }
  }

  useEffect(() => {
    void load();
  }, []);

  return { items, problem, more: next ? () => void load(next) : undefined };
}
