import { useState, type FormEvent } from "react";
import { login } from "../api/session";
import type { Problem } from "../api/problem";
import { Field, ProblemAlert } from "../components/forms";
import { navigate } from "../router";

export function Login({ next }: { next: string }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    const p = await login(username, password);
    setBusy(false);
    setProblem(p);
    if (!p) navigate(next === "/login" ? "/beers" : next);
  }

  return (
    <form onSubmit={submit} aria-describedby="login-help" noValidate>
      <p id="login-help">Sign in with your username or email.</p>
      <ProblemAlert problem={problem} fields={["username", "password"]} />
      <Field form="login" name="username" label="Username or email" problem={problem} value={username}
        onChange={(e) => setUsername(e.target.value)} autoComplete="username" required />
      <Field form="login" name="password" label="Password" type="password" problem={problem} value={password}
        onChange={(e) => setPassword(e.target.value)} autoComplete="current-password" required />
      <button type="submit" disabled={busy}>Sign in</button>
      <p>New here? <a href="#/register">Create an account</a>.</p>
    </form>
  );
}
