// Exercises: the list, and one exercise with its statement, a code editor, the submission
// being graded (polled until it leaves pending/running) and the caller's submissions.
import { useEffect, useRef, useState, type FormEvent } from "react";
import type * as sdk from "../api/generated";
import { usePages } from "../api/pages";
import type { Problem } from "../api/problem";
import { api, call } from "../api/session";
import { CodeEditor } from "../components/CodeEditor";
import { ProblemAlert } from "../components/forms";
import { Markdown } from "../components/Markdown";

type Exercise = sdk.exercises.components["schemas"]["Exercise"];
type Submission = sdk.exercises.components["schemas"]["Submission"];

/** How often a submission being graded is asked about. */
const POLL_MS = 500;

function graded(s: Submission): boolean {
  return s.status !== "pending" && s.status !== "running";
}

export function Exercises({ id }: { id?: string }) {
  return id ? <ExercisePage id={id} /> : <ExerciseList />;
}

function ExerciseList() {
  const { items: exercises, problem, more } = usePages((page_token) =>
    api.exercises.GET("/v1/exercises", { params: { query: { limit: 20, ...(page_token && { page_token }) } } }),
  );

  return (
    <>
      <ProblemAlert problem={problem} />
      {exercises && exercises.length === 0 && <p>No exercises yet.</p>}
      {exercises && exercises.length > 0 && (
        <ul className="cards" aria-label="Exercises">
          {exercises.map((e) => (
            <li key={e.id} className="card">
              <h2>
                <a href={`#/exercises/${e.id}`}>{e.title}</a>
              </h2>
              <p className="muted">{e.language}</p>
            </li>
          ))}
        </ul>
      )}
      {more && (
        <button type="button" onClick={more}>
          Load more exercises
        </button>
      )}
    </>
  );
}

function ExercisePage({ id }: { id: string }) {
  const [exercise, setExercise] = useState<Exercise | null>(null);
  const [code, setCode] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [submitProblem, setSubmitProblem] = useState<Problem | null>(null);
  const [shown, setShown] = useState<Submission | null>(null);
  const [submissions, setSubmissions] = useState<Submission[]>([]);
  const [busy, setBusy] = useState(false);
  // Polling stops when the page goes away.
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);

  const path = { exercise_id: id };

  async function loadSubmissions() {
    const r = await call(() =>
      api.exercises.GET("/v1/exercises/{exercise_id}/submissions", { params: { path, query: { limit: 100 } } }),
    );
    if (r.data && alive.current) setSubmissions(r.data.items);
  }

  useEffect(() => {
    void (async () => {
      const r = await call(() => api.exercises.GET("/v1/exercises/{exercise_id}", { params: { path } }));
      setProblem(r.problem);
      if (r.data) {
        setExercise(r.data);
        setCode(r.data.starter_code ?? "");
      }
    })();
    void loadSubmissions();
  }, [id]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    const r = await call(() =>
      api.exercises.POST("/v1/exercises/{exercise_id}/submissions", { params: { path }, body: { code } }),
    );
    setSubmitProblem(r.problem);
    let s = r.data;
    while (s && alive.current) {
      setShown(s);
      if (graded(s)) break;
      await new Promise((done) => setTimeout(done, POLL_MS));
      const submission_id = s.id;
      const next = await call(() =>
        api.exercises.GET("/v1/exercises/{exercise_id}/submissions/{submission_id}", {
          params: { path: { exercise_id: id, submission_id } },
        }),
      );
      setSubmitProblem(next.problem);
      s = next.data;
    }
    setBusy(false);
    await loadSubmissions();
  }

  if (!exercise) return <ProblemAlert problem={problem} />;
  return (
    <>
      <h2>{exercise.title}</h2>
      <p className="muted">Language: {exercise.language}</p>
      <Markdown text={exercise.statement} />
      <form onSubmit={submit} noValidate>
        <ProblemAlert problem={submitProblem} />
        <CodeEditor id="solution-code" label="Your solution" value={code} onChange={setCode} />
        <button type="submit" disabled={busy}>
          Submit
        </button>
      </form>
      <p className={shown && graded(shown) && shown.status !== "passed" ? "status bad" : "status"} role="status">
        {shown && (graded(shown) ? `Submission ${shown.status}.` : `Submission ${shown.status}…`)}
      </p>
      {shown && <SubmissionResult submission={shown} />}
      <h2>Your submissions</h2>
      {submissions.length === 0 ? (
        <p>None yet.</p>
      ) : (
        <table>
          <caption className="visually-hidden">Your submissions</caption>
          <thead>
            <tr>
              <th scope="col">Submitted</th>
              <th scope="col">Status</th>
              <th scope="col">Tests passed</th>
              <th scope="col"><span className="visually-hidden">Details</span></th>
            </tr>
          </thead>
          <tbody>
            {[...submissions].reverse().map((s) => (
              <tr key={s.id}>
                <td>{new Date(s.created_at).toLocaleString()}</td>
                <td>{s.status}</td>
                <td>
                  {s.tests.filter((t) => t.status === "passed").length} of {s.tests.length}
                </td>
                <td>
                  <button type="button" className="secondary" onClick={() => { setShown(s); setCode(s.code); }}>
                    Show<span className="visually-hidden"> the submission of {new Date(s.created_at).toLocaleString()}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function SubmissionResult({ submission: s }: { submission: Submission }) {
  return (
    <section aria-label="Result" className={`result ${s.status}`}>
      {s.message && <p>{s.message}</p>}
      {s.tests.length > 0 && (
        <table>
          <caption>Tests</caption>
          <thead>
            <tr>
              <th scope="col">Test</th>
              <th scope="col">Result</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {s.tests.map((t) => (
              <tr key={t.name}>
                <td>{t.name}</td>
                <td>{t.status}</td>
                <td>{t.message ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {s.output !== undefined && s.output !== "" && (
        <>
          <h3>Output{s.output_truncated && " (cut short)"}</h3>
          <pre className="output" role="region" tabIndex={0} aria-label="Output">{s.output}</pre>
        </>
      )}
    </section>
  );
}
