// The shell: a header with the navigation and the page the URL's hash names. Hash routes
// (#/beers) need nothing from the server: it serves one index.html at `/`.
import { useEffect, useState, useSyncExternalStore, type ReactNode } from "react";
import { logout, onSessionChange, signedIn } from "./api/session";
import { Cart } from "./pages/Cart";
import { Catalogue } from "./pages/Catalogue";
import { Exercises } from "./pages/Exercises";
import { Login } from "./pages/Login";
import { Orders } from "./pages/Orders";
import { Register } from "./pages/Register";
import { Scores } from "./pages/Scores";
import { Todos } from "./pages/Todos";
import { navigate } from "./router";

/** `rest`: what follows the page's path (`/exercises/<id>` gives `<id>`), if anything. */
type Page = { path: string; title: string; needsLogin: boolean; render: (rest?: string) => ReactNode };

// A new page is one entry here and one file in pages/.
const PAGES: Page[] = [
  { path: "/beers", title: "Beers", needsLogin: false, render: () => <Catalogue /> },
  { path: "/cart", title: "Cart", needsLogin: true, render: () => <Cart /> },
  { path: "/orders", title: "Orders", needsLogin: true, render: () => <Orders /> },
  { path: "/todos", title: "To-dos", needsLogin: true, render: () => <Todos /> },
  { path: "/exercises", title: "Exercises", needsLogin: true, render: (id) => <Exercises key={id} id={id} /> },
  { path: "/scores", title: "My scores", needsLogin: true, render: () => <Scores /> },
];

/** The page a path shows, and what follows the page's own path. */
function pageOf(path: string): { page?: Page; rest?: string } {
  for (const page of PAGES) {
    if (path === page.path) return { page };
    if (path.startsWith(`${page.path}/`)) return { page, rest: path.slice(page.path.length + 1) };
  }
  return {};
}

function currentPath(): string {
  return window.location.hash.replace(/^#/, "") || "/beers";
}

export function App() {
  const [path, setPath] = useState(currentPath);
  const isSignedIn = useSyncExternalStore(onSessionChange, signedIn);
  useEffect(() => {
    const onHash = () => setPath(currentPath());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  let title: string;
  let content: ReactNode;
  const { page, rest } = pageOf(path);
  if (path === "/register") {
    title = "Create an account";
    content = <Register />;
  } else if (path === "/login" || (page?.needsLogin && !isSignedIn)) {
    title = "Sign in";
    content = <Login next={page?.needsLogin ? path : "/beers"} />;
  } else if (page) {
    title = page.title;
    content = page.render(rest);
  } else {
    title = "Not found";
    content = <p>There is no page here. <a href="#/beers">See the beers</a>.</p>;
  }
  useEffect(() => {
    document.title = `${title} · Taproom`;
  }, [title]);

  return (
    <>
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header>
        <span className="brand">Taproom</span>
        <nav aria-label="Main">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#${p.path}`} aria-current={p === page ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
            <li>
              {isSignedIn ? (
                <button type="button" className="link" onClick={() => {
                  navigate("/login");
                  void logout();
                }}>
                  Sign out
                </button>
              ) : (
                <a href="#/login" aria-current={path === "/login" ? "page" : undefined}>
                  Sign in
                </a>
              )}
            </li>
          </ul>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <h1>{title}</h1>
        {content}
      </main>
    </>
  );
}
