// The official openai Node SDK's Responses API against the gateway: create, stream, a
// function-tool round trip with previous_response_id, retrieve, input items, delete.
// Usage: TOKENHUB_BASE_URL=http://127.0.0.1:8000/v1 TOKENHUB_KEY=th-... node responses_smoke.mjs
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.TOKENHUB_BASE_URL, apiKey: process.env.TOKENHUB_KEY, maxRetries: 0 });
const model = "claude-sonnet-4-6";

const plain = await client.responses.create({ model, input: "Hello from Node", instructions: "Be brief." });
assert.ok(plain.id.startsWith("resp_"));
assert.match(plain.output_text, /Simulated reply to: Hello from Node/);
assert.equal(plain.status, "completed");
assert.equal(plain.usage.total_tokens, plain.usage.input_tokens + plain.usage.output_tokens);

const stream = client.responses.stream({ model, input: "Stream [[sim:words=15]]" });
let deltas = 0;
stream.on("response.output_text.delta", () => { deltas += 1; });
const streamed = await stream.finalResponse();
assert.equal(deltas, 15);
assert.equal(streamed.output_text.trim().split(/\s+/).length, 15);

const tools = [{
  type: "function", name: "get_weather", strict: true, description: "Weather for a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
}];
const first = await client.responses.create({ model, input: "Weather in Paris? [[sim:tool]]", tools });
const call = first.output.find((item) => item.type === "function_call");
assert.equal(call.name, "get_weather");
assert.deepEqual(JSON.parse(call.arguments), { city: "Paris" });
const second = await client.responses.create({
  model, tools, previous_response_id: first.id,
  input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny in Paris" }],
});
assert.match(second.output_text, /^Simulated reply to: sunny in Paris/);

const got = await client.responses.retrieve(second.id);
assert.equal(got.output_text, second.output_text);
const items = [];
for await (const item of client.responses.inputItems.list(second.id)) items.push(item);
assert.deepEqual(items.map((item) => item.type), ["function_call_output"]);
await client.responses.delete(second.id);
await assert.rejects(client.responses.retrieve(second.id), (err) => err instanceof OpenAI.NotFoundError);
console.log("node responses smoke: ok");
