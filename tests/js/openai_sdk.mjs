// usage: node openai_sdk.mjs BASE_URL — one plain and one streamed completion through the openai npm package.
// Prints one JSON line with what came back; tests/test_js_sdk.py checks it.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "sk-js-client", maxRetries: 0 });
const messages = [{ role: "user", content: "Tell me a story." }];

const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
const models = new Set();
let finishReason = null;
for await (const chunk of stream) {
  models.add(chunk.model);
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    streamed += choice.delta.content ?? "";
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
}

let notFound = null;
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
} catch (err) {
  notFound = { status: err.status, code: err.code, name: err.constructor.name };
}

console.log(JSON.stringify({
  plain: completion.choices[0].message.content,
  plainModel: completion.model,
  streamed,
  streamModels: [...models],
  finishReason,
  usage,
  notFound,
}));
