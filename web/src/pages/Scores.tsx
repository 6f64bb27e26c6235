// My scores: one row per exercise the caller has submitted to. Scores are counted from
// the exercises service's events, so a fresh result may take a moment: Refresh asks again.
import { useEffect, useState } from "react";
import type * as sdk from "../api/generated";
import type { Problem } from "../api/problem";
import { everyPage } from "../api/pages";
import { api, call } from "../api/session";
import { ProblemAlert } from "../components/forms";

type Score = sdk.scores.components["schemas"]["Score"];

export function Scores() {
  const [scores, setScores] = useState<Score[] | null>(null);
  const [titles, setTitles] = useState<Map<string, string>>(new Map());
  const [problem, setProblem] = useState<Problem | null>(null);

  async function load() {
    const r = await everyPage((page_token) =>
      api.scores.GET("/v1/scores", { params: { query: { limit: 100, ...(page_token && { page_token }) } } }),
    );
    setProblem(r.problem);
    if (!r.data) return;
    setScores(r.data);
    // Titles are a nicety: without them the rows still show.
    const ex = await call(() => api.exercises.GET("/v1/exercises", { params: { query: { limit: 100 } } }));
    if (ex.data) setTitles(new Map(ex.data.items.map((e) => [e.id, e.title])));
  }

  useEffect(() => {
    void load();
  }, []);

  return (
    <>
      <ProblemAlert problem={problem} />
      <button type="button" className="secondary refresh" onClick={() => void load()}>
        Refresh
      </button>
      {scores && scores.length === 0 && <p>No scores yet. <a href="#/exercises">Try an exercise</a>.</p>}
      {scores && scores.length > 0 && (
        <table>
          <caption className="visually-hidden">Your scores</caption>
          <thead>
            <tr>
              <th scope="col">Exercise</th>
              <th scope="col">Best result</th>
              <th scope="col">Tests passed</th>
              <th scope="col">Attempts</th>
              <th scope="col">First passed</th>
            </tr>
          </thead>
          <tbody>
            {scores.map((s) => (
              <tr key={s.exercise_id}>
                <td>
                  <a href={`#/exercises/${s.exercise_id}`}>{titles.get(s.exercise_id) ?? s.exercise_id}</a>
                </td>
                <td>{s.best_status}</td>
                <td>
                  {s.best_passed_tests} of {s.best_total_tests}
                </td>
                <td>{s.attempts}</td>
                <td>{s.first_passed_at ? new Date(s.first_passed_at).toLocaleString() : "not yet"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
