// tokenwire's protocol for JavaScript (ES module, no build step, no framework): one session's
// socket, kept open. It keeps the session's cursor (the newest `seq` seen), reconnects with
// backoff when the connection drops, resumes with `?last_seq=`, and drops any stored frame it
// has seen: a reply survives a drop without a gap or a duplicate. A `ready` frame with
// `recovered: false` says the stream could not replay what was missed (read history). The chat
// page is built on it; docs/clients.md shows a client in ten lines.

export const SUBPROTOCOL = "tokenwire.v1";

/** Close codes after which reconnecting cannot help: the token (4401), membership (4403). */
export const FINAL_CLOSES = new Set([4401, 4403, 1008]);

/**
 * A server frame (docs/protocol.md); stored ones carry `seq`.
 * @typedef {{type: string, seq?: number, last_seq?: number, recovered?: boolean | null,
 *            message_id?: string, [field: string]: unknown}} Frame
 */

/** Where a client is in its session's stream. */
export class Cursor {
  /** @param {number | null} [lastSeq] the newest stored frame seen (null: none yet) */
  constructor(lastSeq = null) {
    /** @type {number | null} */
    this.lastSeq = lastSeq;
  }

  /** The resume query of the socket's URL. @returns {string} */
  query() {
    return this.lastSeq == null ? "" : `?last_seq=${this.lastSeq}`;
  }

  /**
   * Whether `frame` is new (false: a stored frame already seen); moves the cursor. A `ready`
   * frame sets it to the stream's head when there was none, or when the stream could not serve it.
   * @param {Frame} frame
   * @returns {boolean}
   */
  accept(frame) {
    if (frame.type === "ready") {
      if (this.lastSeq == null || frame.recovered === false) this.lastSeq = frame.last_seq ?? 0;
      return true;
    }
    if (frame.seq == null) return true; // not stored: typing, presence, pongs, errors
    if (this.lastSeq != null && frame.seq <= this.lastSeq) return false;
    this.lastSeq = frame.seq;
    return true;
  }
}

/**
 * The pause before reconnection `attempt` (0, 1, …): 0.5 s doubling up to 10 s, ±20 %.
 * @param {number} attempt
 * @param {() => number} [draw] uniform in [0, 1)
 * @returns {number} milliseconds
 */
export function backoffMs(attempt, draw = Math.random) {
  return Math.min(500 * 2 ** attempt, 10000) * (0.8 + 0.4 * draw());
}

/**
 * @typedef {object} SocketOptions
 * @property {string} url the session's socket: `wss://host/v1/sessions/<id>/ws`
 * @property {string} token a bearer token (sent as the `bearer.<token>` subprotocol)
 * @property {number | null} [lastSeq] resume after this frame (e.g. the newest in history)
 * @property {(frame: Frame) => void} onFrame every frame, each stored one once
 * @property {(status: "connecting" | "connected" | "reconnecting" | "offline") => void} [onStatus]
 * @property {(code: number, reason: string) => void} [onClosed] the server ended the session
 */

/** One session's socket, made again whenever it drops, until `close()` or a final close. */
export class SessionSocket {
  /** @param {SocketOptions} options */
  constructor({ url, token, lastSeq = null, onFrame, onStatus = () => {}, onClosed = () => {} }) {
    this.url = url;
    this.token = token;
    this.cursor = new Cursor(lastSeq);
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onClosed = onClosed;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.retries = 0;
    this.reconnects = 0;
    this.stopped = false;
  }

  /** Connect; frames then come to `onFrame`. @returns {this} */
  open() {
    this.stopped = false;
    this.#connect();
    return this;
  }

  /** @returns {boolean} */
  get connected() {
    return this.ws != null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a client frame; false when not connected (send it again once connected). @param {object} frame */
  send(frame) {
    if (!this.connected || this.ws == null) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Drop the connection now (the network changed): it is made again and resumed. */
  drop() {
    this.ws?.close(4000, "dropped by the client");
  }

  /** Close for good. */
  close() {
    this.stopped = true;
    this.ws?.close();
    this.ws = null;
  }

  #connect() {
    const ws = new WebSocket(this.url + this.cursor.query(), [SUBPROTOCOL, `bearer.${this.token}`]);
    this.ws = ws;
    this.onStatus(this.retries ? "reconnecting" : "connecting");
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (!this.cursor.accept(frame)) return;
      if (frame.type === "ready") { this.retries = 0; this.onStatus("connected"); }
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws || this.stopped) return;
      if (FINAL_CLOSES.has(event.code)) { this.onStatus("offline"); this.onClosed(event.code, event.reason); return; }
      this.onStatus("reconnecting");
      const delay = backoffMs(this.retries);
      this.retries += 1;
      setTimeout(() => {
        if (this.stopped || this.ws !== ws) return;
        this.reconnects += 1;
        this.#connect();
      }, delay);
    };
  }
}
