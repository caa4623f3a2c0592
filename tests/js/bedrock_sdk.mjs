// usage: node bedrock_sdk.mjs BASE_URL MODEL — a plain and a streamed completion of a Bedrock model through the
// openai npm package, and a throttled request. Prints one JSON line; tests/test_bedrock.py checks it.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-js-client", maxRetries: 0 });
const messages = [{ role: "user", content: "Hi" }];

const completion = await client.chat.completions.create({ model, messages });
const stream = await client.chat.completions.create({
  model,
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
let finishReason = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    streamed += choice.delta.content ?? "";
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
}
let throttled = null;
try {
  await client.chat.completions.create({ model: "js-throttle", messages });
} catch (err) {
  throttled = { status: err.status, code: err.code, name: err.constructor.name };
}
console.log(JSON.stringify({ plain: completion.choices[0].message.content, streamed, finishReason, usage, throttled }));
