// A reply's tool calls, shown as collapsible steps: what the model asked (the tool and its
// arguments, as they stream), whether it is running, and its result or why it failed.

import { escapeHtml } from "./render.js";

const SAID = { arguments: "asking…", running: "running…", done: "done", failed: "failed" };

// Fold a `stream_tool_call` frame into `calls` (call_id → call), in the order calls came.
export function add(calls, frame) {
  const call = calls.get(frame.call_id) || { name: frame.name, step: frame.step, arguments: "", result: "", error: "" };
  if (frame.status === "arguments") call.arguments += frame.arguments;
  call.status = frame.status;
  if (frame.result) call.result = frame.result;
  if (frame.error) call.error = frame.error;
  calls.set(frame.call_id, call);
  return calls;
}

// The calls as a reply's end (or its history) has them.
export function ended(toolCalls) {
  return new Map((toolCalls || []).map((c) => [c.call_id, { ...c }]));
}

// Render `calls` into the reply's `.steps` list; an open step stays open as it updates.
export function paint(list, calls) {
  list.hidden = !calls || calls.size === 0;
  if (list.hidden) { list.innerHTML = ""; return; }
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.call));
  list.innerHTML = [...calls].map(([id, c]) => {
    const outcome = c.status === "failed" ? `<div class="error">${escapeHtml(c.error)}</div>`
      : c.result ? `<pre class="result">${escapeHtml(c.result)}</pre>` : "";
    return `<li class="step ${escapeHtml(c.status)}"><details data-call="${escapeHtml(id)}"${open.has(id) ? " open" : ""}>` +
      `<summary><span class="tag">step ${Number(c.step) || 1} · tool</span> <strong>${escapeHtml(c.name)}</strong> <span class="state">${SAID[c.status] || ""}</span></summary>` +
      `<pre class="arguments">${escapeHtml(c.arguments)}</pre>${outcome}</details></li>`;
  }).join("");
}
