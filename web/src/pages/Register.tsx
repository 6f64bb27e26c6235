import { useState, type FormEvent } from "react";
import { anonymous, call, login } from "../api/session";
import type { Problem } from "../api/problem";
import { Field, ProblemAlert } from "../components/forms";
import { navigate } from "../router";

const FIELDS = ["username", "email", "password", "first_name", "last_name"];

export function Register() {
  const [form, setForm] = useState({ username: "", email: "", password: "", first_name: "", last_name: "" });
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (name: keyof typeof form) => (e: { target: { value: string } }) =>
    setForm({ ...form, [name]: e.target.value });

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    const body = {
      username: form.username,
      email: form.email,
      password: form.password,
      ...(form.first_name && { first_name: form.first_name }),
      ...(form.last_name && { last_name: form.last_name }),
    };
    const { problem } = await call(() => anonymous.users.POST("/v1/users", { body }));
    const signedIn = problem ? problem : await login(form.username, form.password);
    setBusy(false);
    setProblem(signedIn);
    if (!signedIn) navigate("/beers");
  }

  return (
    <form onSubmit={submit} noValidate>
      <ProblemAlert problem={problem} fields={FIELDS} />
      <Field form="register" name="username" label="Username" problem={problem} value={form.username}
        onChange={set("username")} autoComplete="username" required />
      <Field form="register" name="email" label="Email" type="email" problem={problem} value={form.email}
        onChange={set("email")} autoComplete="email" required />
      <Field form="register" name="password" label="Password (at least 8 characters)" type="password" problem={problem}
        value={form.password} onChange={set("password")} autoComplete="new-password" required />
      <Field form="register" name="first_name" label="First name (optional)" problem={problem} value={form.first_name}
        onChange={set("first_name")} autoComplete="given-name" />
      <Field form="register" name="last_name" label="Last name (optional)" problem={problem} value={form.last_name}
        onChange={set("last_name")} autoComplete="family-name" />
      <button type="submit" disabled={busy}>Create account</button>
      <p>Have an account? <a href="#/login">Sign in</a>.</p>
    </form>
  );
}
