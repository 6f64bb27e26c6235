// The to-do list: add, complete (and reopen), filter by done, delete.
import { useEffect, useRef, useState, type FormEvent } from "react";
import type * as sdk from "../api/generated";
import type { Problem } from "../api/problem";
import { everyPage } from "../api/pages";
import { api, call } from "../api/session";
import { Field, ProblemAlert } from "../components/forms";

type Task = sdk.tasks.components["schemas"]["Task"];
type Filter = "all" | "open" | "done";

export function Todos() {
  const [tasks, setTasks] = useState<Task[] | null>(null);
  const [filter, setFilter] = useState<Filter>("all");
  const [title, setTitle] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [listProblem, setListProblem] = useState<Problem | null>(null);

  // Loads overlap (a change reloads while the filter changes): only the latest may show.
  const latest = useRef(0);
  // The filter as it is when a change's reload starts, not as it was when the change began.
  const current = useRef(filter);
  current.current = filter;

  async function load(which: Filter) {
    const mine = ++latest.current;
    const done = which === "all" ? undefined : which === "done";
    // Walk every page: a to-do list is short, and the filter is the service's.
    const r = await everyPage((page_token) =>
      api.tasks.GET("/v1/tasks", {
        params: { query: { limit: 100, ...(done !== undefined && { done }), ...(page_token && { page_token }) } },
      }),
    );
    if (mine !== latest.current) return;
    setListProblem(r.problem);
    if (r.data) setTasks(r.data);
  }

  useEffect(() => {
    void load(filter);
  }, [filter]);

  async function add(e: FormEvent) {
    e.preventDefault();
    const r = await call(() => api.tasks.POST("/v1/tasks", { body: { title } }));
    setProblem(r.problem);
    if (!r.problem) {
      setTitle("");
      await load(current.current);
    }
  }

  async function toggle(task: Task) {
    const task_id = task.id;
    // Show the change at once; the reload below shows what the service kept.
    setTasks((ts) => ts?.map((t) => (t.id === task_id ? { ...t, done: !t.done } : t)) ?? null);
    const r = await call(() =>
      api.tasks.PATCH("/v1/tasks/{task_id}", { params: { path: { task_id } }, body: { done: !task.done } }),
    );
    setListProblem(r.problem);
    await load(current.current);
  }

  async function remove(task: Task) {
    const task_id = task.id;
    const r = await call(() => api.tasks.DELETE("/v1/tasks/{task_id}", { params: { path: { task_id } } }));
    setListProblem(r.problem);
    await load(current.current);
  }

  return (
    <>
      <form onSubmit={add} className="inline" noValidate>
        <ProblemAlert problem={problem} fields={["title"]} />
        <Field form="todo" name="title" label="New to-do" problem={problem} value={title}
          onChange={(e) => setTitle(e.target.value)} autoComplete="off" />
        <button type="submit">Add</button>
      </form>
      <fieldset className="filter">
        <legend>Show</legend>
        {(["all", "open", "done"] as const).map((f) => (
          <label key={f}>
            <input type="radio" name="filter" value={f} checked={filter === f} onChange={() => setFilter(f)} />
            {f === "all" ? "All" : f === "open" ? "Not done" : "Done"}
          </label>
        ))}
      </fieldset>
      <ProblemAlert problem={listProblem} />
      {tasks && tasks.length === 0 && <p>Nothing to show.</p>}
      {tasks && tasks.length > 0 && (
        <ul className="tasks" aria-label="To-dos">
          {tasks.map((task) => (
            <li key={task.id} className={task.done ? "done" : undefined}>
              <label>
                <input type="checkbox" checked={task.done} onChange={() => void toggle(task)} />
                <span>{task.title}</span>
              </label>
              <button type="button" className="secondary" onClick={() => void remove(task)}>
                Delete<span className="visually-hidden"> {task.title}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
