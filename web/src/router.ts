/** Goes to a page of the app (hash routes: the server serves one index.html). */
export function navigate(path: string) {
  window.location.hash = path;
}
