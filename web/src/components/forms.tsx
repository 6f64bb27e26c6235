// Form pieces that show a problem where it belongs: the problem's detail at the top of
// the form (announced to screen readers), and each validation message next to the field
// its JSON pointer names, tied to the input with aria-describedby.
import type { InputHTMLAttributes } from "react";
import { fieldError, otherErrors, type Problem } from "../api/problem";

export function ProblemAlert({ problem, fields = [] }: { problem: Problem | null; fields?: string[] }) {
  if (!problem) return null;
  const rest = otherErrors(problem, fields);
  return (
    <div className="problem" role="alert">
      <strong>{problem.title}</strong>
      {problem.detail && <p>{problem.detail}</p>}
      {rest.length > 0 && (
        <ul>
          {rest.map((m) => (
            <li key={m}>{m}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

type FieldProps = InputHTMLAttributes<HTMLInputElement> & {
  /** The body field this input fills: its id, and the pointer its errors carry. */
  name: string;
  label: string;
  problem: Problem | null;
  form: string;
};

export function Field({ name, label, problem, form, ...input }: FieldProps) {
  const id = `${form}-${name}`;
  const error = fieldError(problem, name);
  return (
    <div className={error ? "field invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        name={name}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-error` : undefined}
        {...input}
      />
      {error && (
        <p className="field-error" id={`${id}-error`}>
          {error}
        </p>
      )}
    </div>
  );
}
