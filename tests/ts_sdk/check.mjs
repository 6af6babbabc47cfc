// Issue 11 through the official TypeScript SDK: list filters, bulk DLQ count and cursor,
// dlqIds, unknown keys, messages and schedules without a body. Point QSTASH_URL and
// QSTASH_TOKEN at a fresh qstash_local (`jobtrail qstash-dev`); exits 1 on a difference.
import http from "node:http";
import { Client } from "@upstash/qstash";

const client = new Client({
  baseUrl: process.env.QSTASH_URL,
  token: process.env.QSTASH_TOKEN,
  retry: false,
});
const run = `ts${Date.now()}`;
const failures = [];

function check(what, ok, detail) {
  if (!ok) failures.push(`${what}: ${JSON.stringify(detail)}`);
}

async function until(read, done, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const failing = http.createServer((req, res) => {
  req.resume();
  res.writeHead(500).end("boom");
});
await new Promise((r) => failing.listen(0, "127.0.0.1", r));
const failUrl = `http://127.0.0.1:${failing.address().port}/fail`;

try {
  // count bounds a bulk DLQ delete and answers a cursor while more match.
  const label = `${run}_dlq`;
  for (let i = 0; i < 3; i++) {
    await client.publish({ url: failUrl, body: "doomed", retries: 0, label });
  }
  const listed = await until(
    () => client.dlq.listMessages({ filter: { label } }),
    (r) => r.messages.length === 3,
  );
  check("three DLQ entries", listed.messages.length === 3, listed);
  const first = await client.dlq.delete({ filter: { label }, count: 1 });
  check("delete count=1 deletes one", first.deleted === 1 && !!first.cursor, first);
  const ids = (await client.dlq.listMessages({ filter: { label } })).messages.map((m) => m.dlqId);
  check("two left after deleting one", ids.length === 2, ids);
  if (ids.length) {
    const byIds = await client.dlq.listMessages({ dlqIds: [ids[0]] });
    const one = byIds.messages.length === 1 && byIds.messages[0].dlqId === ids[0];
    check("list by dlqIds", one, byIds);
    const retried = await client.dlq.retry({ filter: { label }, count: 1 });
    check("retry count=1 retries one", retried.responses.length === 1 && !!retried.cursor, retried);
  }

  // An unknown key is rejected, never an empty filter.
  let rejected = null;
  try {
    await client.dlq.delete({ filter: { labeel: "x" }, count: 100 });
  } catch (error) {
    rejected = String(error);
  }
  check("unknown key rejected", rejected !== null && rejected.includes("labeel"), rejected);
  const kept = await client.dlq.listMessages({ filter: { label } });
  check("typo deleted nothing", kept.messages.length === ids.length, kept.messages.length);

  // Array filters match any value (logs and bulk cancel).
  const urls = ["a", "b", "c"].map((p) => `https://example.com/${run}/${p}`);
  const parked = [];
  for (const url of urls) {
    parked.push((await client.publish({ url, body: "parked", delay: 3600 })).messageId);
  }
  const logs = await client.logs({ filter: { url: [urls[0], urls[1]] } });
  const seen = new Set(logs.logs.map((l) => l.messageId));
  check("logs url array", seen.size === 2 && seen.has(parked[0]) && seen.has(parked[1]), [...seen]);
  const cancelled = await client.messages.cancel({ filter: { url: [urls[0], urls[1]] } });
  check("cancel url array", cancelled.cancelled === 2, cancelled);

  // No body, no body field.
  const { messageId } = await client.publish({ url: urls[2], delay: 3600 });
  const message = await client.messages.get(messageId);
  check("message without body", !("body" in message), message);
  const { scheduleId } = await client.schedules.create({
    destination: urls[2],
    cron: "0 0 1 1 *",
  });
  const schedule = await client.schedules.get(scheduleId);
  check("schedule without body", !("body" in schedule), schedule);
  await client.schedules.delete(scheduleId);
} finally {
  failing.close();
}

if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("ok");
