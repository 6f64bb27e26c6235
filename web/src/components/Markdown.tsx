// A safe subset of Markdown for exercise statements: paragraphs (blank lines), fenced
// code blocks and `inline code`, built as React elements from text. Nothing the author
// writes becomes HTML: a tag in a statement shows as the text it is.
import type { ReactNode } from "react";

function inline(text: string): ReactNode[] {
  // Odd pieces sit between backticks.
  return text.split("`").map((piece, i) => (i % 2 === 1 ? <code key={i}>{piece}</code> : piece));
}

export function Markdown({ text }: { text: string }) {
  const blocks: ReactNode[] = [];
  const fences = text.split(/^```[^\n]*\n?/m);
  fences.forEach((part, i) => {
    if (i % 2 === 1) {
      blocks.push(<pre key={`f${i}`}><code>{part.replace(/\n$/, "")}</code></pre>);
      return;
    }
    part
      .split(/\n\s*\n/)
      .map((p) => p.trim())
      .filter((p) => p)
      .forEach((p, j) => blocks.push(<p key={`p${i}-${j}`}>{inline(p)}</p>));
  });
  return <div className="statement">{blocks}</div>;
}
