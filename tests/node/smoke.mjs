// The official openai Node SDK against the gateway: plain, streamed, tools, errors.
// Usage: TOKENHUB_BASE_URL=http://127.0.0.1:8000/api/v1 TOKENHUB_KEY=th-... node smoke.mjs
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.TOKENHUB_BASE_URL, apiKey: process.env.TOKENHUB_KEY, maxRetries: 0 });
const model = "anthropic/claude-sonnet-4-6";

const plain = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hello from Node" }] });
assert.match(plain.choices[0].message.content, /Simulated reply to: Hello from Node/);
assert.equal(plain.choices[0].finish_reason, "stop");
assert.ok(plain.usage.total_tokens > 0);

let text = "";
let usage = null;
const stream = await client.chat.completions.create({
  model, stream: true, stream_options: { include_usage: true },
  messages: [{ role: "user", content: "Stream [[sim:words=20]]" }],
});
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text.trim().split(/\s+/).length, 20);
assert.equal(usage.completion_tokens, 20);

const runner = client.chat.completions.stream({
  model, messages: [{ role: "user", content: "Both [[sim:parallel_tools]]" }],
  tools: [
    { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } },
    { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { timezone: { type: "string" } } } } },
  ],
});
const final = await runner.finalChatCompletion();
const calls = final.choices[0].message.tool_calls;
assert.deepEqual(calls.map((c) => c.function.name), ["get_weather", "get_time"]);
assert.deepEqual(JSON.parse(calls[1].function.arguments), { timezone: "x" });

await assert.rejects(
  client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }),
  (err) => err instanceof OpenAI.NotFoundError && err.code === "model_not_found",
);
console.log("node smoke: ok");
