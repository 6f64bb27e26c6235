// Errors as the services send them: RFC 9457 problems (application/problem+json), with an
// `errors` list of {pointer, message} for validation failures. Anything else that goes
// wrong (no answer at all, a body that is not a problem) becomes a problem here, so the
// pages have one thing to show.
import type { users } from "./generated";

export type Problem = users.components["schemas"]["Problem"];

export function isProblem(value: unknown): value is Problem {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Problem).status === "number" &&
    typeof (value as Problem).title === "string"
  );
}

/** The problem in an error answer, or one describing what came instead. */
export function toProblem(error: unknown, response?: Response): Problem {
  if (isProblem(error)) return error;
  const status = response?.status ?? 0;
  if (status === 0) {
    return {
      type: "about:blank",
      title: "No answer",
      status: 0,
      detail: "The server cannot be reached. Check your connection and try again.",
      request_id: "",
    };
  }
  return {
    type: "about:blank",
    title: response?.statusText || "Error",
    status,
    detail: typeof error === "string" && error ? error : `The server answered ${status}.`,
    request_id: response?.headers.get("x-request-id") ?? "",
  };
}

/** The message for one body field (`/password`, `/promo_code`), if the problem names it. */
export function fieldError(problem: Problem | null | undefined, field: string): string | undefined {
  return problem?.errors?.find((e) => e.pointer === `/${field}` || e.pointer.startsWith(`/${field}/`))
    ?.message;
}

/** Validation messages that name no field the form shows. */
export function otherErrors(problem: Problem | null | undefined, fields: string[]): string[] {
  return (problem?.errors ?? [])
    .filter((e) => !fields.some((f) => e.pointer === `/${f}` || e.pointer.startsWith(`/${f}/`)))
    .map((e) => `${e.pointer || "request"}: ${e.message}`);
}
