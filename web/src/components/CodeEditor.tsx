// The code editor: a labelled textarea. Tab indents (four spaces) as in an editor; so
// that keyboard users can still leave it, Escape turns that off until the next edit, and
// the hint says so.
import { useRef, type KeyboardEvent } from "react";

type Props = { id: string; label: string; value: string; onChange: (value: string) => void };

const INDENT = "    ";

export function CodeEditor({ id, label, value, onChange }: Props) {
  const tabLeaves = useRef(false);

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Escape") {
      tabLeaves.current = true;
      return;
    }
    if (e.key !== "Tab" || e.shiftKey || e.ctrlKey || e.altKey || e.metaKey || tabLeaves.current) return;
    e.preventDefault();
    // Edit the element itself, caret included, then tell React: the value it renders is
    // then the element's already, so the caret stays where the indent ended.
    const area = e.currentTarget;
    area.setRangeText(INDENT, area.selectionStart, area.selectionEnd, "end");
    onChange(area.value);
  }

  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <p className="muted" id={`${id}-hint`}>
        Tab indents by four spaces; press Escape, then Tab, to leave the editor.
      </p>
      <textarea
        id={id}
        className="code"
        value={value}
        spellCheck={false}
        autoCapitalize="off"
        autoCorrect="off"
        rows={14}
        aria-describedby={`${id}-hint`}
        onKeyDown={onKeyDown}
        onChange={(e) => {
          tabLeaves.current = false;
          onChange(e.target.value);
        }}
        onBlur={() => {
          tabLeaves.current = false;
        }}
      />
    </div>
  );
}
