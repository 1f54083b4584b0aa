import { describe, expect, it } from "vitest";
import { readEventStream, SseParser, type SseMessage } from "./sse";

describe("SseParser", () => {
  it("reads the stream format the API sends: id, event and data, ended by a blank line", () => {
    const p = new SseParser();
    const out = p.push('id: 1\nevent: store_event\ndata: {"id":1}\n\nevent: store\ndata: {"x":2}\n\n');
    expect(out).toEqual([
      { event: "store_event", data: '{"id":1}', lastEventId: "1" },
      { event: "store", data: '{"x":2}', lastEventId: "1" },
    ]);
  });

  it("joins data lines, ignores comments, and handles CRLF and CR line ends", () => {
    const p = new SseParser();
    expect(p.push(": keep-alive\r\n\r\ndata: a\r\ndata:b\rdata\r\r")).toEqual([
      { event: "message", data: "a\nb\n", lastEventId: "" },
    ]);
  });

  it("keeps partial lines and events across chunks, including a CRLF split in two", () => {
    const p = new SseParser("7");
    expect(p.push("event: sto")).toEqual([]);
    expect(p.push("re\r")).toEqual([]);
    expect(p.push("\ndata: {}\r")).toEqual([]);
    expect(p.push("\n\r\n")).toEqual([{ event: "store", data: "{}", lastEventId: "7" }]);
  });

  it("reads retry, and dispatches nothing for an event without data", () => {
    const p = new SseParser();
    expect(p.push("retry: 3000\nevent: x\n\n")).toEqual([]);
    expect(p.retry).toBe(3000);
  });
});

describe("readEventStream", () => {
  it("decodes a byte stream split inside a multi-byte character and drops an unfinished event", async () => {
    const bytes = new TextEncoder().encode('id: 3\nevent: store_event\ndata: "Grüße"\n\nevent: store\ndata: {');
    const split = bytes.indexOf(0xc3) + 1;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, split));
        c.enqueue(bytes.slice(split));
        c.close();
      },
    });
    const got: SseMessage[] = [];
    await readEventStream(body, (m) => got.push(m));
    expect(got).toEqual([{ event: "store_event", data: '"Grüße"', lastEventId: "3" }]);
  });
});
