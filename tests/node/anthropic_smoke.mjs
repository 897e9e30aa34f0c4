// The official Anthropic Node SDK against the gateway's native /v1/messages: plain, streamed
// with a tool, errors. Usage: TOKENHUB_ROOT=http://127.0.0.1:8000 TOKENHUB_KEY=th-... node anthropic_smoke.mjs
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.TOKENHUB_ROOT, apiKey: process.env.TOKENHUB_KEY, maxRetries: 0 });
const model = "claude-sonnet-4-6";

const plain = await client.messages.create({ model, max_tokens: 100, messages: [{ role: "user", content: "Hello from Node" }] });
assert.match(plain.content[0].text, /Simulated reply to: Hello from Node/);
assert.equal(plain.stop_reason, "end_turn");

const stream = client.messages.stream({
  model, max_tokens: 300, messages: [{ role: "user", content: "Weather? [[sim:tool]]" }],
  tools: [{ name: "get_weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }],
});
let text = "";
stream.on("text", (delta) => { text += delta; });
const final = await stream.finalMessage();
assert.equal(final.stop_reason, "tool_use");
assert.deepEqual(final.content.find((b) => b.type === "tool_use").input, { city: "Paris" });
assert.match(text, /Let me check/);

await assert.rejects(
  new Anthropic({ baseURL: process.env.TOKENHUB_ROOT, apiKey: "th-wrong", maxRetries: 0 })
    .messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "x" }] }),
  (err) => err instanceof Anthropic.AuthenticationError && err.error.error.type === "authentication_error",
);
await assert.rejects(
  client.messages.create({ model: "claude-opus-5-5", max_tokens: 10, messages: [{ role: "user", content: "x" }] }),
  (err) => err instanceof Anthropic.NotFoundError,
);
console.log("anthropic node smoke: ok");
