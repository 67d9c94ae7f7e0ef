// tokenwire's chat page: the tokenwire.v1 protocol in a browser, with no build step.

import { SessionSocket } from "./client.js";
import * as commands from "./commands.js";
import { $, bubble, clock, escapeHtml, markdown, newId, notice } from "./render.js";
import * as sidebar from "./sidebar.js";
import * as steps from "./steps.js";

const state = {
  token: localStorage.getItem("tokenwire.token"),
  user: localStorage.getItem("tokenwire.user"),
  session: null, info: null, socket: null, lastSeq: null,
  named: null,          // the session's title from the model (its `session_title` frame)
  replies: new Map(),   // the asked message's id → {el, attempts, versions: Map(version → text), current}
  versionOf: new Map(), // a reply's own message id (`m~v2`) → [asked id, version]
  mine: new Set(),      // message ids whose reply this user asked for
  streaming: new Set(), // own message ids of replies this user asked for that stream
  pending: new Map(),   // message_id → a sent message not yet echoed
  older: null,          // the history cursor for "Load older"
  silent: new Set(),    // commands the page runs for itself (/help)
  typing: new Map(), typingSent: 0, typingTimer: null,
};
// The session's raw WebSocket (the socket's own, replaced when it reconnects).
Object.defineProperty(state, "ws", { get: () => state.socket?.ws ?? null });
window.state = state; // for the browser tests and the curious

const FAILING = new Set(["rate_limited", "busy", "budget_exceeded", "unavailable", "forbidden", "too_large", "bad_frame"]);

// --- messages -------------------------------------------------------------------------------

function showMessage(m, before = null) {
  if (document.querySelector(`[data-message="${CSS.escape(m.message_id)}"]`)) return null;
  const mine = m.participant === state.user;
  if (mine) state.mine.add(m.message_id);
  const who = mine ? "you" : m.participant;
  const li = bubble(mine ? "mine" : "them", who, markdown(m.content), m.created_at || m.ts, before);
  li.dataset.message = m.message_id;
  return li;
}

function showSystem(m, before = null) {
  if (document.querySelector(`[data-message="${CSS.escape(m.message_id)}"]`)) return;
  const li = bubble("system", "", escapeHtml(m.content), m.created_at || m.ts, before);
  li.dataset.message = m.message_id;
}

function confirmSent(messageId) {
  const sent = state.pending.get(messageId);
  if (!sent) return;
  clearTimeout(sent.timer);
  sent.li.classList.remove("pending", "failed");
  sent.li.querySelector(".resend")?.remove();
  state.pending.delete(messageId);
}

function failSent(messageId, why) {
  const sent = state.pending.get(messageId);
  if (!sent || sent.li.classList.contains("failed")) return;
  clearTimeout(sent.timer);
  sent.li.classList.remove("pending");
  sent.li.classList.add("failed");
  sent.li.title = why;
  const again = document.createElement("button");
  again.type = "button"; again.className = "resend"; again.textContent = "Not sent: resend";
  again.onclick = () => { again.remove(); sent.li.classList.remove("failed"); transmit(messageId, sent.content, sent.reply, sent.li); };
  sent.li.appendChild(again);
}

function transmit(messageId, content, reply, li) {
  const entry = { li, content, reply, timer: setTimeout(() => failSent(messageId, "no answer from the server"), 10000) };
  state.pending.set(messageId, entry);
  li.classList.add("pending");
  if (!send({ type: "message", message_id: messageId, content, reply })) failSent(messageId, "not connected");
}

// --- replies and their versions -------------------------------------------------------------

function locate(ownId) {
  return state.versionOf.get(ownId) || [ownId, 1];
}

function reply(askedId, before = null) {
  let r = state.replies.get(askedId);
  if (!r) {
    const el = bubble("assistant streaming", "assistant", "", null, before);
    el.dataset.reply = askedId;
    el.querySelector(".text").insertAdjacentHTML("beforebegin",
      '<details class="reasoning" hidden><summary>Thinking…</summary><div class="thought"></div></details><ol class="steps" hidden></ol>');
    el.querySelector(".text").insertAdjacentHTML("afterend", '<ol class="sources" hidden></ol>');
    el.insertAdjacentHTML("beforeend", '<span class="tools"><button type="button" class="regenerate" title="Regenerate">↻ Regenerate</button>' +
      '<span class="versions" hidden><button type="button" class="prev">‹</button><span class="count"></span><button type="button" class="next">›</button></span></span>');
    r = { el, attempts: new Map(), versions: new Map([[1, ""]]), thoughts: new Map(), sources: new Map(), calls: new Map(), current: 1 };
    el.querySelector(".regenerate").onclick = () => regenerate(askedId);
    el.querySelector(".prev").onclick = () => { r.current = Math.max(1, r.current - 1); paint(r); };
    el.querySelector(".next").onclick = () => { r.current = Math.min(r.versions.size, r.current + 1); paint(r); };
    state.replies.set(askedId, r);
  }
  return r;
}

function paint(r) {
  r.el.querySelector(".text").innerHTML = markdown(r.versions.get(r.current) || "");
  const thought = r.thoughts.get(r.current) || "";
  const details = r.el.querySelector(".reasoning");
  details.hidden = !thought;
  details.querySelector(".thought").innerHTML = markdown(thought);
  details.querySelector("summary").textContent = r.el.classList.contains("streaming") && !r.versions.get(r.current) ? "Thinking…" : "Reasoning";
  steps.paint(r.el.querySelector(".steps"), r.calls.get(r.current));
  const cited = r.sources.get(r.current) || [];
  const list = r.el.querySelector(".sources");
  list.hidden = cited.length === 0;
  list.innerHTML = cited.map((c) => {
    const url = /^https?:\/\//.test(c.url) ? c.url : "";
    const name = escapeHtml(c.title || c.url || c.id);
    const link = url ? `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${name}</a>` : name;
    return `<li title="${escapeHtml(c.snippet || "")}">${link}</li>`;
  }).join("");
  const many = r.versions.size > 1;
  r.el.querySelector(".versions").hidden = !many;
  if (many) r.el.querySelector(".count").textContent = `${r.current}/${r.versions.size}`;
  r.el.dataset.version = String(r.current);
  if (!r.el.nextSibling) r.el.scrollIntoView({ block: "end" });
}

function label(r, text) { r.el.querySelector(".who").textContent = text; }

function finish(r, frame) {
  r.el.classList.remove("streaming");
  const u = frame.usage;
  if (u) {
    const cost = frame.cost_usd == null ? "no price" : `$${frame.cost_usd.toFixed(6)}`;
    r.el.title = `${u.prompt_tokens} prompt + ${u.completion_tokens} completion tokens` +
      `${u.estimated ? " (estimated)" : ""} · ${cost}` +
      (frame.ttft_ms != null ? ` · first token ${Math.round(frame.ttft_ms)} ms` : "");
  }
  const ended = { cancelled: "stopped", budget: "budget reached", session_budget: "session's cap reached" };
  label(r, ended[frame.finish_reason] ? `assistant · ${ended[frame.finish_reason]}` : "assistant");
}

async function regenerate(askedId) {
  try {
    const made = await api("POST", `/v1/sessions/${state.session}/messages/${encodeURIComponent(askedId)}/regenerate`);
    state.mine.add(made.message_id);
  } catch (err) { notice(`Cannot regenerate: ${err.message}`); }
}

function updateStop() { $("stop").hidden = state.streaming.size === 0; }

// --- frames from the server -----------------------------------------------------------------

const onFrameOf = {
  ready(frame) {
    if (frame.recovered === false) loadHistory(); // the stream could not replay what was missed
    loadPresence();
    if (state.silent.size === 0) { const id = `help-${newId()}`; state.silent.add(id); send({ type: "message", message_id: id, content: "/help" }); }
  },
  message(frame) {
    if (frame.role === "system") { showSystem(frame); refreshSession(); return; }
    confirmSent(frame.message_id);
    showMessage(frame);
    state.typing.delete(frame.participant); renderTyping();
  },
  waiting(frame) { // no worker serves the model now: the reply's place says so until one does
    const r = reply(frame.message_id);
    if (r.versions.get(r.current)) return;
    r.el.classList.add("waiting");
    r.el.querySelector(".text").textContent = `Waiting for a worker: ${frame.detail}.`;
  },
  stream_start(frame) {
    const asked = frame.regenerates || frame.message_id;
    const version = frame.version || 1;
    state.versionOf.set(frame.message_id, [asked, version]);
    const r = reply(asked);
    r.el.classList.remove("waiting");
    if (!r.versions.has(version)) r.versions.set(version, "");
    if (frame.attempt > (r.attempts.get(version) || 0)) { r.attempts.set(version, frame.attempt); r.versions.set(version, ""); r.thoughts.set(version, ""); r.sources.set(version, []); r.calls.set(version, new Map()); }
    r.current = version; paint(r);
    if (frame.ts) r.el.querySelector("time").textContent = clock(frame.ts);
    r.el.classList.add("streaming");
    if (state.mine.has(frame.message_id)) state.streaming.add(frame.message_id);
    updateStop();
  },
  stream_token(frame) {
    const [asked, version] = locate(frame.message_id);
    const r = reply(asked);
    r.versions.set(version, (r.versions.get(version) || "") + frame.text);
    if (r.current === version) paint(r);
  },
  stream_reasoning(frame) {
    const [asked, version] = locate(frame.message_id);
    const r = reply(asked);
    r.thoughts.set(version, (r.thoughts.get(version) || "") + frame.text);
    if (r.current === version) paint(r);
  },
  stream_sources(frame) {
    const [asked, version] = locate(frame.message_id);
    const r = reply(asked);
    r.sources.set(version, [...(r.sources.get(version) || []), ...frame.sources]);
    if (r.current === version) paint(r);
  },
  stream_tool_call(frame) {
    const [asked, version] = locate(frame.message_id);
    const r = reply(asked);
    r.calls.set(version, steps.add(r.calls.get(version) || new Map(), frame));
    if (r.current === version) paint(r);
  },
  stream_end(frame) {
    const [asked, version] = locate(frame.message_id);
    const r = reply(asked);
    r.versions.set(version, frame.text); r.thoughts.set(version, frame.reasoning || "");
    r.sources.set(version, frame.sources || []); r.calls.set(version, steps.ended(frame.tool_calls));
    if (frame.warnings?.length) notice(frame.warnings.join(" "));
    r.current = version; finish(r, frame); paint(r);
    if (state.streaming.delete(frame.message_id)) refreshSession(); // its title, its time
    updateStop();
  },
  stream_error(frame) {
    const [asked, version] = locate(frame.message_id);
    const r = reply(asked);
    r.el.classList.remove("streaming", "waiting"); r.el.classList.add("error");
    r.versions.set(version, `${frame.message}${frame.solutions.length ? "\n" + frame.solutions.join("\n") : ""}`);
    r.current = version; paint(r);
    state.streaming.delete(frame.message_id); updateStop();
  },
  typing(frame) {
    if (frame.state) state.typing.set(frame.participant, true); else state.typing.delete(frame.participant);
    renderTyping();
  },
  session_title(frame) { state.named = frame; showNamed(); },
  presence() { loadPresence(); },
  progress(frame) { commands.progress(frame); },
  command_result(frame) {
    if (state.silent.has(frame.message_id)) { if (frame.data?.commands) commands.learn(frame.data.commands); return; }
    commands.finished(frame);
    if (frame.ok && ["title", "model", "temperature", "max_tokens", "system", "invite"].includes(frame.command)) refreshSession();
  },
  error(frame) {
    const wait = frame.retry_after_s ? ` Try again in ${Math.ceil(frame.retry_after_s)} s.` : "";
    const words = { rate_limited: "Slow down:", budget_exceeded: "Budget reached:", busy: "Busy:", unavailable: "Unavailable:" };
    notice(`${words[frame.code] || "Refused:"} ${frame.detail}.${wait}`);
    const oldest = state.pending.keys().next();
    if (FAILING.has(frame.code) && !oldest.done) failSent(oldest.value, frame.detail);
  },
};

function onFrame(frame) { // each stored frame once: the socket's cursor drops repeats
  onFrameOf[frame.type]?.(frame);
}

function setStatus(status) { $("status").className = `status ${status}`; $("status").textContent = status; }

function renderTyping() {
  const names = [...state.typing.keys()];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// --- the socket -----------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  state.socket = new SessionSocket({
    url: `${scheme}://${location.host}/v1/sessions/${state.session}/ws`,
    token: state.token,
    lastSeq: state.lastSeq,
    onFrame,
    onStatus: setStatus,
    onClosed: (code, reason) => {
      if (code === 4401) { signOut("Your sign-in expired."); return; }
      notice(reason === "the session was deleted" ? "This session was deleted." : "You are not a member of this session.");
      sidebar.loadSessions(null, state.user);
    },
  }).open();
}

function send(frame) {
  if (state.socket?.send(frame)) return true;
  notice("Not connected: your message was not sent.");
  return false;
}

// --- REST -----------------------------------------------------------------------------------

async function api(method, path, body) {
  const answer = await fetch(path, {
    method, headers: { "content-type": "application/json", authorization: `Bearer ${state.token}` },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (answer.status === 401) { signOut("Please sign in again."); throw new Error("signed out"); }
  if (!answer.ok) throw new Error((await answer.json().catch(() => ({}))).detail || answer.statusText);
  return answer.status === 204 ? null : answer.json();
}

// History, newest page first; `older` pages go above what is shown.
async function loadHistory(older = false) {
  const cursor = older && state.older ? `&before=${state.older}` : "";
  const page = await api("GET", `/v1/sessions/${state.session}/messages?limit=50${cursor}`);
  const top = older ? $("messages").firstChild : null;
  for (const m of page.messages.slice().reverse()) {
    if (m.role === "user") showMessage(m, top);
    else if (m.role === "system") showSystem(m, top);
    else historyReply(m, top);
    if (!older && m.seq != null && (state.lastSeq == null || m.seq > state.lastSeq)) state.lastSeq = m.seq;
  }
  state.older = page.next;
  $("load-older").hidden = !page.next;
}

function historyReply(m, top) {
  const r = reply(m.in_reply_to, state.replies.has(m.in_reply_to) ? null : top);
  r.versions.set(m.version || 1, m.content);
  r.thoughts.set(m.version || 1, m.reasoning || "");
  r.sources.set(m.version || 1, m.sources || []);
  r.calls.set(m.version || 1, steps.ended(m.tool_calls));
  if (m.current !== false) { r.current = m.version || 1; finish(r, { usage: m.usage, cost_usd: null, ttft_ms: null }); }
  if (m.status === "error") r.el.classList.add("error");
  if (m.status === "cancelled") label(r, "assistant · stopped");
  r.el.querySelector("time").textContent = clock(m.created_at);
  paint(r);
}

async function loadPresence() {
  const here = await api("GET", `/v1/sessions/${state.session}/presence`).catch(() => ({ participants: [] }));
  const info = state.info || { owner: "", viewers: [] };
  const role = (p) => (p === info.owner ? "owner" : info.viewers.includes(p) ? "viewer" : "member");
  const people = new Set(here.participants);
  if (state.socket?.connected) people.add(state.user); // connected: here
  $("presence").innerHTML = [...people].map((p) =>
    `<li>${escapeHtml(p === state.user ? `${p} (you)` : p)} <span class="role">${role(p)}</span></li>`).join("");
}

// The model named the session (a `session_title` frame): shown wherever the session still has
// the title it replaces, also over a list persistence gave before it recorded the new one.
function showNamed() {
  const named = state.named;
  if (!named) return;
  const before = named.replaces || "Untitled";
  const item = document.querySelector(`#session-list li[data-session="${CSS.escape(state.session)}"] .title`);
  for (const shown of [$("session-title"), item]) if (shown?.textContent === before) shown.textContent = named.title;
}

async function refreshSession() {
  state.info = await api("GET", `/v1/sessions/${state.session}`);
  sidebar.showSettings(state.info, state.user);
  $("ask-row").hidden = state.info.members.length < 2;
  const viewer = state.info.viewers.includes(state.user);
  $("input").disabled = viewer;
  $("input").placeholder = viewer ? "You are a viewer: you read, you do not send." : "Message, or / for commands (Enter sends, Shift+Enter for a new line)";
  // The list is persistence's own answer: a title it gave the session is there at once.
  const listed = (await sidebar.loadSessions(state.session, state.user)).find((s) => s.session_id === state.session);
  $("session-title").textContent = (listed || state.info).title || "Untitled";
  showNamed();
}

async function open(sessionId) {
  state.socket?.close(); state.socket = null;
  setStatus("connecting");
  if (!sessionId) { state.session = null; location.hash = ""; show("lobby"); return; }
  state.info = await api("GET", `/v1/sessions/${sessionId}`);
  state.session = sessionId; state.owner = state.info.owner; state.named = null;
  state.lastSeq = null; state.older = null;
  for (const set of [state.replies, state.versionOf, state.streaming, state.pending]) set.clear();
  $("messages").innerHTML = ""; $("empty").hidden = false;
  location.hash = `session=${sessionId}`;
  $("session-id").textContent = sessionId;
  $("invite-form").hidden = state.info.owner !== state.user;
  show("chat");
  await refreshSession();
  await loadHistory();
  if (state.lastSeq == null) state.lastSeq = 0;
  connect();
}

// --- screens --------------------------------------------------------------------------------

function show(screen) {
  for (const id of ["signin", "lobby", "chat"]) $(id).hidden = id !== screen;
  $("sessions").hidden = screen === "signin";
  $("who").textContent = state.user ? `signed in as ${state.user}` : "";
}

function signOut(message) {
  localStorage.removeItem("tokenwire.token"); localStorage.removeItem("tokenwire.user");
  state.token = null; state.user = null;
  state.socket?.close(); state.socket = null;
  show("signin");
  if (message) notice(message);
}

async function signedIn(token, user) {
  state.token = token; state.user = user;
  localStorage.setItem("tokenwire.token", token); localStorage.setItem("tokenwire.user", user);
  sidebar.init(api, (sid) => open(sid).catch((e) => notice(e.message)));
  await sidebar.loadModels();
  sidebar.loadSessions(null, user);
  const match = location.hash.match(/session=([\w-]+)/);
  if (match) open(match[1]).catch((e) => { notice(e.message); show("lobby"); });
  else show("lobby");
}

function userFromToken(token) {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub; } catch { return null; }
}

// --- what people do -------------------------------------------------------------------------

function submit(content) {
  const message_id = newId();
  if (commands.isCommand(content)) {
    if (send({ type: "message", message_id, content })) commands.started(message_id, content);
    return true;
  }
  const reply = $("ask-row").hidden || $("ask").checked;
  const li = showMessage({ message_id, participant: state.user, content: content.replace(/^\/\//, "/") });
  if (!li) return false;
  transmit(message_id, content, reply, li);
  return true;
}

$("dev-signin").onclick = async () => {
  const answer = await fetch("/v1/auth/dev-token", { method: "POST" });
  if (!answer.ok) { notice("Dev sign-in is off on this server: paste a token."); return; }
  const { token, user_id } = await answer.json();
  signedIn(token, user_id);
};
$("token-form").onsubmit = (e) => {
  e.preventDefault();
  const token = $("token-input").value.trim();
  const user = userFromToken(token);
  if (user) signedIn(token, user); else notice("That is not a token.");
};
$("new-session").onclick = async () => {
  const { session_id } = await api("POST", "/v1/sessions", {});
  await open(session_id);
};
$("join-form").onsubmit = (e) => {
  e.preventDefault();
  const value = $("join-input").value.trim();
  const id = (value.match(/session=([\w-]+)/) || [null, value])[1];
  open(id).catch((err) => notice(`Cannot join: ${err.message}`));
};
$("copy-link").onclick = () => navigator.clipboard?.writeText(location.href).then(() => notice("Link copied."));
$("invite-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("POST", `/v1/sessions/${state.session}/members`, { user_id: $("invite-input").value.trim() });
    $("invite-input").value = ""; notice("Added: send them the link."); refreshSession();
  } catch (err) { notice(`Cannot add: ${err.message}`); }
};
$("settings").onsubmit = async (e) => {
  e.preventDefault();
  try { state.info = await sidebar.saveSettings(state.session); sidebar.showSettings(state.info, state.user); notice("Saved: the next message uses them."); }
  catch (err) { notice(`Not saved: ${err.message}`); }
};
$("load-older").onclick = () => loadHistory(true).catch((err) => notice(err.message));
for (const example of document.querySelectorAll("#empty .example")) {
  example.onclick = () => { $("input").value = example.textContent; $("input").focus(); };
}
$("composer").onsubmit = (e) => {
  e.preventDefault();
  const content = $("input").value.trim();
  if (!content || !submit(content)) return;
  $("input").value = ""; commands.suggest("");
  if (state.typingSent) { send({ type: "typing", state: false }); state.typingSent = 0; }
};
$("input").addEventListener("keydown", (e) => {
  const menuOpen = !$("command-menu").hidden;
  if (e.key === "Tab" && menuOpen) { e.preventDefault(); commands.complete(); return; }
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("input").addEventListener("input", () => {
  commands.suggest($("input").value);
  if (commands.isCommand($("input").value)) return; // commands are not typing
  const now = Date.now();
  if (now - state.typingSent > 3000) { send({ type: "typing", state: true }); state.typingSent = now; }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => { send({ type: "typing", state: false }); state.typingSent = 0; }, 4000);
});
$("stop").onclick = () => { for (const id of state.streaming) send({ type: "cancel", message_id: id }); };
window.addEventListener("offline", () => setStatus("offline"));

if (state.token && state.user) signedIn(state.token, state.user); else show("signin");
