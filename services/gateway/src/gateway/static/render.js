// Rendering for the chat page: text made safe, a little Markdown, times, and message bubbles.

export const $ = (id) => document.getElementById(id);

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Markdown on escaped text: whatever a model or a person writes, no HTML gets through.
export function markdown(source) {
  const blocks = escapeHtml(source).split(/```/);
  return blocks.map((block, i) => {
    if (i % 2 === 1) return `<pre><code>${block.replace(/^\w*\n/, "")}</code></pre>`;
    return block
      .replace(/`([^`\n]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>")
      .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>')
      .replace(/\n/g, "<br>");
  }).join("");
}

// "14:05" today, "3 Dec 14:05" before.
export function clock(when) {
  const at = when instanceof Date ? when : new Date(when);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (at.toDateString() === new Date().toDateString()) return time;
  return `${at.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

// A message bubble: `by` and its time in a small line above the text. `before` places it
// (older history goes above what is shown).
export function bubble(kind, by, html, when, before = null) {
  const li = document.createElement("li");
  li.className = kind;
  li.innerHTML = `<span class="by"><span class="who">${escapeHtml(by)}</span>` +
    `<time>${escapeHtml(clock(when || new Date()))}</time></span><span class="text">${html}</span>`;
  const list = $("messages");
  if (before) list.insertBefore(li, before); else { list.appendChild(li); li.scrollIntoView({ block: "end" }); }
  $("empty").hidden = true;
  return li;
}

export function notice(text) {
  $("notice").textContent = text;
  if (text) setTimeout(() => { if ($("notice").textContent === text) $("notice").textContent = ""; }, 6000);
}

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
