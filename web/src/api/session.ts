// The signed-in session and the typed clients. Access tokens live minutes
// (TOKEN_TTL_SECS), so the session refreshes one shortly before it expires, one refresh
// at a time (refresh tokens rotate: a second use of one ends the whole session). The
// refresh token is kept in sessionStorage so that a reload keeps the tab signed in; the
// access token only in memory.
//
// Every call goes through openapi-fetch clients typed by the generated SDK
// (./generated, from the same bundled specs as the Rust client): a spec change that
// breaks a call here fails `tsc`.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type * as sdk from "./generated";
import { toProblem, type Problem } from "./problem";

type Token = sdk.users.components["schemas"]["Token"];

const REFRESH_KEY = "taproom.refresh_token";
/** Refresh this long before the access token expires. */
const MARGIN_MS = 30_000;

let access: { token: string; expiresAt: number } | null = null;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<() => void>();

function notify() {
  listeners.forEach((l) => l());
}

export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function signedIn(): boolean {
  return access !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
}

function keep(token: Token) {
  access = { token: token.access_token, expiresAt: Date.now() + token.expires_in * 1000 };
  sessionStorage.setItem(REFRESH_KEY, token.refresh_token);
  notify();
}

function forget() {
  access = null;
  sessionStorage.removeItem(REFRESH_KEY);
  notify();
}

// No cookies: the API authenticates by header only. And with credentials omitted, a 401
// with a Basic challenge (a wrong password) comes back to the app instead of making the
// browser open its own login dialog.
const base = { baseUrl: window.location.origin, credentials: "omit" as const };

/** Adds the bearer token, refreshing it first when it is about to expire. */
const bearer: Middleware = {
  async onRequest({ request }) {
    const token = await accessToken();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
  async onResponse({ response }) {
    // The session ended elsewhere (logout, password change, reuse): sign in again.
    if (response.status === 401) forget();
    return response;
  },
};

function client<Paths extends {}>(): Client<Paths> {
  const c = createClient<Paths>(base);
  c.use(bearer);
  return c;
}

/** Clients for calls that need no token (sign-up, login, refresh, the catalogue). */
export const anonymous = {
  users: createClient<sdk.users.paths>(base),
  beers: createClient<sdk.beers.paths>(base),
};

/** Clients that send the session's access token. */
export const api = {
  users: client<sdk.users.paths>(),
  orders: client<sdk.orders.paths>(),
  tasks: client<sdk.tasks.paths>(),
  promotions: client<sdk.promotions.paths>(),
  exercises: client<sdk.exercises.paths>(),
  scores: client<sdk.scores.paths>(),
  // A further service gets its client here, typed by its own generated module.
};

async function accessToken(): Promise<string | null> {
  if (access && access.expiresAt - Date.now() > MARGIN_MS) return access.token;
  if (sessionStorage.getItem(REFRESH_KEY) === null) return null;
  await refresh();
  return access?.token ?? null;
}

/** Exchanges the refresh token for a new pair; false (and signed out) if that fails. */
function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const refresh_token = sessionStorage.getItem(REFRESH_KEY);
    if (!refresh_token) return false;
    try {
      const { data } = await anonymous.users.POST("/v1/auth/refresh", { body: { refresh_token } });
      if (data) {
        keep(data);
        return true;
      }
    } catch {
      // No answer: keep the refresh token, the next call tries again.
      return false;
    }
    forget();
    return false;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Signs in with HTTP Basic credentials; the problem if that fails. */
export async function login(username: string, password: string): Promise<Problem | null> {
  try {
    const basic = btoa(String.fromCharCode(...new TextEncoder().encode(`${username}:${password}`)));
    const { data, error, response } = await anonymous.users.POST("/v1/auth/token", {
      headers: { Authorization: `Basic ${basic}` },
    });
    if (data) {
      keep(data);
      return null;
    }
    return toProblem(error, response);
  } catch (e) {
    return toProblem(e);
  }
}

/** Ends the session at the server (its refresh tokens stop working) and here. */
export async function logout(): Promise<void> {
  const refresh_token = sessionStorage.getItem(REFRESH_KEY);
  forget();
  if (refresh_token) {
    try {
      await anonymous.users.POST("/v1/auth/logout", { body: { refresh_token } });
    } catch {
      // Signed out here either way; the refresh token expires on its own.
    }
  }
}

/** Runs a call of the typed clients; its data, or the problem to show. */
export async function call<T>(
  run: () => Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<{ data: T; problem: null } | { data: null; problem: Problem }> {
  try {
    const { data, error, response } = await run();
    if (response.ok) return { data: data as T, problem: null };
    return { data: null, problem: toProblem(error, response) };
  } catch (e) {
    return { data: null, problem: toProblem(e) };
  }
}
