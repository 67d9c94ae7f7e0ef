// The sessions sidebar (your sessions, latest first: open, rename, delete or leave) and the
// session's settings (model, temperature, reply length, system prompt: its owner changes them).

import { $, clock, escapeHtml, notice } from "./render.js";

let api = null;     // (method, path, body) → JSON
let opened = null;  // (session id) → opens it
let models = [];

export function init(callApi, openSession) { api = callApi; opened = openSession; }

export async function loadModels() {
  const answer = await api("GET", "/v1/models").catch(() => ({ models: [] }));
  models = answer.models;
  $("model-select").innerHTML = models.map((m) =>
    `<option value="${escapeHtml(m.id)}">${escapeHtml(m.label)}${m.default ? " (default)" : ""}` +
    `${m.workers === 0 ? " (no worker now)" : ""}</option>`).join("");
}

export function modelLabel(id) {
  const model = models.find((m) => m.id === id) || models.find((m) => m.default);
  return model ? model.label : "";
}

export async function loadSessions(current, me) {
  const page = await api("GET", "/v1/sessions?limit=50").catch(() => ({ sessions: [] }));
  const list = $("session-list");
  list.innerHTML = page.sessions.map((s) => {
    const mine = s.owner === me;
    return `<li data-session="${escapeHtml(s.session_id)}" class="${s.session_id === current ? "current" : ""}">` +
      `<span class="title">${escapeHtml(s.title || "Untitled")}</span>` +
      `<span class="dim">${escapeHtml(modelLabel(s.model))} · ${escapeHtml(clock(s.last_active_at))}` +
      `${s.members > 1 ? ` · ${s.members} people` : ""}</span>` +
      `<span class="actions">${mine ? '<button type="button" class="rename">Rename</button>' +
        '<button type="button" class="delete">Delete</button>' : '<button type="button" class="leave">Leave</button>'}</span></li>`;
  }).join("") || '<li class="dim">No sessions yet.</li>';
  for (const li of list.querySelectorAll("li[data-session]")) wire(li, current, me);
  return page.sessions;
}

function wire(li, current, me) {
  const sid = li.dataset.session;
  li.querySelector(".title").onclick = () => opened(sid);
  const act = async (what, method, path, body) => {
    try { await api(method, path, body); } catch (err) { notice(`Cannot ${what}: ${err.message}`); return false; }
    await loadSessions(current, me);
    return true;
  };
  li.querySelector(".rename")?.addEventListener("click", () => rename(li, sid, act));
  li.querySelector(".delete")?.addEventListener("click", async () => {
    if (!confirm("Delete this session, its history and its stream for everyone?")) return;
    if (await act("delete", "DELETE", `/v1/sessions/${sid}`) && sid === current) opened(null);
  });
  li.querySelector(".leave")?.addEventListener("click", async () => {
    if (!confirm("Leave this session?")) return;
    if (await act("leave", "DELETE", `/v1/sessions/${sid}/members/${encodeURIComponent(me)}`) && sid === current) opened(null);
  });
}

function rename(li, sid, act) {
  const title = li.querySelector(".title");
  const input = document.createElement("input");
  input.className = "rename-input";
  input.value = title.textContent === "Untitled" ? "" : title.textContent;
  title.replaceWith(input);
  input.focus();
  input.onkeydown = async (e) => {
    if (e.key === "Escape") { input.replaceWith(title); return; }
    if (e.key !== "Enter") return;
    e.preventDefault();
    await act("rename", "PATCH", `/v1/sessions/${sid}`, { title: input.value.trim() });
  };
}

// The settings form, as the session has them; only its owner may change them.
export function showSettings(session, me) {
  const mine = session.owner === me;
  $("model-select").value = session.model || (models.find((m) => m.default) || {}).id || "";
  $("temperature").value = session.temperature ?? "";
  $("max-tokens").value = session.max_tokens ?? "";
  $("system-prompt").value = session.system_prompt ?? "";
  for (const id of ["model-select", "temperature", "max-tokens", "system-prompt", "save-settings"]) $(id).disabled = !mine;
  $("model-name").textContent = modelLabel(session.model);
}

export async function saveSettings(sid) {
  const number = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
  const body = {
    model: $("model-select").value || null,
    temperature: number("temperature"),
    max_tokens: number("max-tokens"),
    system_prompt: $("system-prompt").value.trim() || null,
  };
  return api("PATCH", `/v1/sessions/${sid}`, body);
}
