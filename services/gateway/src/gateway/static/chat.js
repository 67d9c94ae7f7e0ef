// tokenwire's chat page: the tokenwire.v1 protocol in a browser, with no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("tokenwire.token"),
  user: localStorage.getItem("tokenwire.user"),
  session: null, owner: null, ws: null, lastSeq: null, retries: 0, closedByUs: false,
  replies: new Map(),   // message_id → {el, attempt, text}
  streaming: new Set(), // message_ids of this user's messages whose reply streams
  typing: new Map(), typingSent: 0, typingTimer: null,
};

// --- rendering ------------------------------------------------------------------------------

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Markdown on escaped text: whatever a model or a person writes, no HTML gets through.
function markdown(source) {
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

function bubble(kind, by, html) {
  const li = document.createElement("li");
  li.className = kind;
  li.innerHTML = `<span class="by">${escapeHtml(by)}</span><span class="text">${html}</span>`;
  $("messages").appendChild(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function showMessage(m) {
  if (document.querySelector(`[data-message="${CSS.escape(m.message_id)}"]`)) return;
  const mine = m.participant === state.user;
  const li = bubble(mine ? "mine" : "them", mine ? "you" : m.participant, markdown(m.content));
  li.dataset.message = m.message_id;
}

function reply(messageId) {
  let r = state.replies.get(messageId);
  if (!r) {
    const el = bubble("assistant streaming", "assistant", "");
    el.dataset.reply = messageId;
    r = { el, attempt: 0, text: "" };
    state.replies.set(messageId, r);
  }
  return r;
}

function paint(r) { r.el.querySelector(".text").innerHTML = markdown(r.text); r.el.scrollIntoView({ block: "end" }); }

function finish(r, frame) {
  r.el.classList.remove("streaming");
  const u = frame.usage;
  if (u) {
    const cost = frame.cost_usd == null ? "no price" : `$${frame.cost_usd.toFixed(6)}`;
    r.el.title = `${u.prompt_tokens} prompt + ${u.completion_tokens} completion tokens` +
      `${u.estimated ? " (estimated)" : ""} · ${cost}` +
      (frame.ttft_ms != null ? ` · first token ${Math.round(frame.ttft_ms)} ms` : "");
  }
}

function notice(text) {
  $("notice").textContent = text;
  if (text) setTimeout(() => { if ($("notice").textContent === text) $("notice").textContent = ""; }, 6000);
}

function setStatus(status) { $("status").className = `status ${status}`; $("status").textContent = status; }

function updateStop() { $("stop").hidden = state.streaming.size === 0; }

function renderTyping() {
  const names = [...state.typing.keys()];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// --- frames from the server -----------------------------------------------------------------

function onFrame(frame) {
  if (frame.seq != null) {
    if (state.lastSeq != null && frame.seq <= state.lastSeq) return; // never twice
    state.lastSeq = frame.seq;
  }
  switch (frame.type) {
    case "ready":
      if (state.lastSeq == null || frame.recovered === false) state.lastSeq = frame.last_seq;
      if (frame.recovered === false) loadHistory();
      state.retries = 0;
      setStatus("connected");
      loadPresence();
      break;
    case "message":
      showMessage(frame);
      state.typing.delete(frame.participant); renderTyping();
      break;
    case "stream_start": {
      const r = reply(frame.message_id);
      if (frame.attempt > r.attempt) { r.attempt = frame.attempt; r.text = ""; paint(r); }
      r.el.classList.add("streaming");
      if (document.querySelector(`li.mine[data-message="${CSS.escape(frame.message_id)}"]`)) state.streaming.add(frame.message_id);
      updateStop();
      break;
    }
    case "stream_token": { const r = reply(frame.message_id); r.text += frame.text; paint(r); break; }
    case "stream_end": {
      const r = reply(frame.message_id);
      r.text = frame.text; paint(r); finish(r, frame);
      if (frame.finish_reason === "cancelled") r.el.querySelector(".by").textContent = "assistant · stopped";
      if (frame.finish_reason === "budget") r.el.querySelector(".by").textContent = "assistant · budget reached";
      if (frame.finish_reason === "session_budget") r.el.querySelector(".by").textContent = "assistant · session's cap reached";
      state.streaming.delete(frame.message_id); updateStop();
      break;
    }
    case "stream_error": {
      const r = reply(frame.message_id);
      r.el.classList.remove("streaming"); r.el.classList.add("error");
      r.text = `${frame.message}${frame.solutions.length ? "\n" + frame.solutions.join("\n") : ""}`; paint(r);
      state.streaming.delete(frame.message_id); updateStop();
      break;
    }
    case "typing":
      if (frame.state) state.typing.set(frame.participant, true); else state.typing.delete(frame.participant);
      renderTyping();
      break;
    case "presence": loadPresence(); break;
    case "error": {
      const wait = frame.retry_after_s ? ` Try again in ${Math.ceil(frame.retry_after_s)} s.` : "";
      const words = { rate_limited: "Slow down:", budget_exceeded: "Budget reached:", busy: "Busy:", unavailable: "Unavailable:" };
      notice(`${words[frame.code] || "Refused:"} ${frame.detail}.${wait}`);
      break;
    }
  }
}

// --- the socket -----------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const cursor = state.lastSeq != null ? `?last_seq=${state.lastSeq}` : "";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/sessions/${state.session}/ws${cursor}`,
                           ["tokenwire.v1", `bearer.${state.token}`]);
  state.ws = ws;
  state.closedByUs = false;
  ws.onmessage = (event) => onFrame(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    if (event.code === 4401) { setStatus("offline"); signOut("Your sign-in expired."); return; }
    if (event.code === 4403) { setStatus("offline"); notice("You are not a member of this session."); return; }
    if (state.closedByUs) return;
    setStatus("reconnecting");
    const delay = Math.min(500 * 2 ** state.retries, 10000) * (0.8 + Math.random() * 0.4);
    state.retries += 1;
    setTimeout(connect, delay);
  };
}

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(frame)); return true; }
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
  return answer.json();
}

async function loadHistory() {
  const page = await api("GET", `/v1/sessions/${state.session}/messages?limit=100`);
  for (const m of page.messages.reverse()) {
    if (m.role === "user") showMessage(m);
    else {
      const r = reply(m.in_reply_to); r.text = m.content; paint(r);
      finish(r, { usage: m.usage, cost_usd: null, ttft_ms: null });
      if (m.status === "error") r.el.classList.add("error");
    }
    if (m.seq != null && (state.lastSeq == null || m.seq > state.lastSeq)) state.lastSeq = m.seq;
  }
}

async function loadPresence() {
  const here = await api("GET", `/v1/sessions/${state.session}/presence`).catch(() => ({ participants: [] }));
  $("presence").innerHTML = here.participants.map((p) => `<li>${escapeHtml(p === state.user ? `${p} (you)` : p)}</li>`).join("");
}

async function open(sessionId) {
  const session = await api("GET", `/v1/sessions/${sessionId}`);
  state.session = sessionId; state.owner = session.owner;
  state.lastSeq = null; state.replies.clear(); state.streaming.clear(); $("messages").innerHTML = "";
  location.hash = `session=${sessionId}`;
  $("session-id").textContent = sessionId;
  $("invite-form").hidden = session.owner !== state.user;
  show("chat");
  await loadHistory();
  if (state.lastSeq == null) state.lastSeq = 0;
  connect();
}

// --- screens --------------------------------------------------------------------------------

function show(screen) {
  for (const id of ["signin", "lobby", "chat"]) $(id).hidden = id !== screen;
  $("who").textContent = state.user ? `signed in as ${state.user}` : "";
}

function signOut(message) {
  localStorage.removeItem("tokenwire.token"); localStorage.removeItem("tokenwire.user");
  state.token = null; state.user = null;
  if (state.ws) { state.closedByUs = true; state.ws.close(); }
  show("signin");
  if (message) notice(message);
}

function signedIn(token, user) {
  state.token = token; state.user = user;
  localStorage.setItem("tokenwire.token", token); localStorage.setItem("tokenwire.user", user);
  const match = location.hash.match(/session=([\w-]+)/);
  if (match) open(match[1]).catch((e) => { notice(e.message); show("lobby"); });
  else show("lobby");
}

function userFromToken(token) {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub; } catch { return null; }
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
  try { await api("POST", `/v1/sessions/${state.session}/members`, { user_id: $("invite-input").value.trim() }); $("invite-input").value = ""; notice("Added: send them the link."); }
  catch (err) { notice(`Cannot add: ${err.message}`); }
};
$("composer").onsubmit = (e) => {
  e.preventDefault();
  const content = $("input").value.trim();
  if (!content) return;
  const message_id = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  if (send({ type: "message", message_id, content })) {
    showMessage({ message_id, participant: state.user, content }); // shown at once; the echo confirms it
    $("input").value = "";
    if (state.typingSent) { send({ type: "typing", state: false }); state.typingSent = 0; }
  }
};
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("input").addEventListener("input", () => {
  const now = Date.now();
  if (now - state.typingSent > 3000) { send({ type: "typing", state: true }); state.typingSent = now; }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => { send({ type: "typing", state: false }); state.typingSent = 0; }, 4000);
});
$("stop").onclick = () => { for (const id of state.streaming) send({ type: "cancel", message_id: id }); };
window.addEventListener("offline", () => setStatus("offline"));

if (state.token && state.user) signedIn(state.token, state.user); else show("signin");
