// Chat commands on the page: the menu that completes them as you type (from /help), and the
// bubble that shows a command's progress and result to the one who ran it.

import { $, bubble, escapeHtml } from "./render.js";

let known = [];           // [{name, usage, summary}] from /help
const pending = new Map(); // message_id → the command's bubble

export function learn(commands) { known = commands; }

export function isCommand(text) { return text.startsWith("/") && !text.startsWith("//"); }

// The menu under the composer: the commands whose name starts with what was typed.
export function suggest(text) {
  const menu = $("command-menu");
  const typed = text.match(/^\/(\w*)$/);
  const matches = typed ? known.filter((c) => c.name.startsWith(typed[1].toLowerCase())) : [];
  menu.hidden = matches.length === 0;
  menu.innerHTML = matches.map((c, i) =>
    `<li data-command="${escapeHtml(c.name)}" class="${i === 0 ? "chosen" : ""}">` +
    `<code>${escapeHtml(c.usage)}</code> <span class="dim">${escapeHtml(c.summary)}</span></li>`).join("");
  for (const li of menu.querySelectorAll("li")) li.onmousedown = (e) => { e.preventDefault(); complete(li.dataset.command); };
  return matches.length > 0;
}

// Fill in the chosen (or the first) command's name.
export function complete(name) {
  const chosen = name || $("command-menu").querySelector("li.chosen")?.dataset.command;
  if (!chosen) return false;
  $("input").value = `/${chosen} `;
  $("input").focus();
  suggest($("input").value);
  return true;
}

export function started(messageId, text) {
  const li = bubble("command pending", "you ran", `<code>${escapeHtml(text)}</code><span class="result"></span>`);
  li.dataset.command = messageId;
  pending.set(messageId, li);
}

export function progress(frame) {
  const li = pending.get(frame.message_id);
  if (!li) return;
  let bar = li.querySelector("progress");
  if (!bar) { bar = document.createElement("progress"); bar.max = 100; li.appendChild(bar); }
  bar.value = frame.percent;
  bar.title = frame.label;
}

// Returns false for a result of a command this page did not show (its own /help).
export function finished(frame) {
  const li = pending.get(frame.message_id);
  if (!li) return false;
  pending.delete(frame.message_id);
  li.classList.remove("pending");
  li.classList.add(frame.ok ? "ok" : "failed");
  li.querySelector("progress")?.remove();
  const result = li.querySelector(".result");
  result.innerHTML = `<br>${escapeHtml(frame.text).replace(/\n/g, "<br>")}`;
  const data = frame.data || {};
  if (frame.command === "export" && data.markdown) {
    const url = URL.createObjectURL(new Blob([data.markdown], { type: "text/markdown" }));
    result.insertAdjacentHTML("beforeend", `<br><a class="download" download="${escapeHtml(data.filename)}" href="${url}">Download ${escapeHtml(data.filename)}</a>`);
  }
  if (frame.command === "help" && data.commands) learn(data.commands);
  return true;
}
