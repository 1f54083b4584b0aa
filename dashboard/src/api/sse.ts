// Server-sent events read with fetch, not EventSource, so the bearer token travels in
// the Authorization header and never in a URL. `SseParser` implements the
// text/event-stream format of the HTML standard (fields `event`, `data`, `id`, `retry`;
// comments; LF, CR or CRLF line ends; events dispatched at a blank line) and is pure, so
// it is tested on its own.

export interface SseMessage {
  /** `event:` (default `message`). */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The last event id seen on the stream so far (`id:`), or "" if none. */
  lastEventId: string;
}

export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private hasData = false;
  private lastEventId = "";
  /** A lone CR at the end of a chunk: a following LF belongs to it. */
  private pendingCr = false;
  /** Milliseconds the server asked to wait before reconnecting (`retry:`). */
  retry: number | null = null;

  constructor(lastEventId = "") {
    this.lastEventId = lastEventId;
  }

  /** Feeds decoded text; returns the events it completed. */
  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (this.pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (c === "\r") {
        if (i + 1 === this.buffer.length) this.pendingCr = true;
        else if (this.buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
      const message = this.line(line);
      if (message) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
    return null;
  }

  private dispatch(): SseMessage | null {
    const message = this.hasData
      ? { event: this.event || "message", data: this.data.join("\n"), lastEventId: this.lastEventId }
      : null;
    this.event = "";
    this.data = [];
    this.hasData = false;
    return message;
  }
}

/** A stream that sent nothing, not even a keep-alive comment, for too long: a connection
 * that died without closing (a sleeping laptop, a NAT that forgot it). */
export class StreamIdle extends Error {
  constructor(readonly ms: number) {
    super(`the event stream sent nothing for ${Math.round(ms / 1000)} s`);
    this.name = "StreamIdle";
  }
}

/** One read, or `StreamIdle` when nothing arrives within `ms`. */
function readWithin<T>(read: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StreamIdle(ms)), ms);
  });
  return Promise.race([read, idle]).finally(() => clearTimeout(timer));
}

/**
 * Reads a text/event-stream body, calling `onMessage` for each event, until the body ends
 * (resolves) or fails or is aborted (rejects). With `idleMs`, a body that sends nothing
 * for that long (the server sends a comment every 15 s) is cancelled and the read
 * rejects with `StreamIdle`.
 */
export async function readEventStream(
  body: ReadableStream<Uint8Array>,
  onMessage: (m: SseMessage) => void,
  lastEventId = "",
  idleMs?: number,
): Promise<void> {
  const parser = new SseParser(lastEventId);
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await (idleMs === undefined ? reader.read() : readWithin(reader.read(), idleMs));
      if (done) break;
      for (const m of parser.push(decoder.decode(value, { stream: true }))) onMessage(m);
    }
    // An event the stream ended in the middle of is dropped, as the standard says.
    for (const m of parser.push(decoder.decode())) onMessage(m);
  } catch (e) {
    if (e instanceof StreamIdle) void reader.cancel().catch(() => undefined);
    throw e;
  } finally {
    reader.releaseLock();
  }
}
