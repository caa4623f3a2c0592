// usage: node openai_sdk.mjs BASE_URL [MODEL [TOOL_MODEL [ERROR_MODEL]]] — a plain and a streamed completion
// through the openai npm package, a request that fails (ERROR_MODEL, default an unknown model), and, given a
// TOOL_MODEL, a streamed tool call reassembled the way JS clients do it.
// Prints one JSON line with what came back; the tests check it (conftest.run_openai_npm).
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "sk-js-client", maxRetries: 0 });
const model = process.argv[3] ?? "gpt-4o-mini";
const toolModel = process.argv[4];
const errorModel = process.argv[5] ?? "no-such-model";
const messages = [{ role: "user", content: "Tell me a story." }];

const completion = await client.chat.completions.create({ model, messages });

const stream = await client.chat.completions.create({
  model,
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

let error = null;
try {
  await client.chat.completions.create({ model: errorModel, messages });
} catch (err) {
  error = { status: err.status, code: err.code, name: err.constructor.name };
}

let toolCalls = null;
if (toolModel) {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }];
  const calls = [];
  const toolStream = await client.chat.completions.create({ model: toolModel, messages, tools, stream: true });
  for await (const chunk of toolStream) {
    for (const call of chunk.choices[0]?.delta.tool_calls ?? []) {
      calls[call.index] ??= { id: "", name: "", arguments: "" };
      calls[call.index].id += call.id ?? "";
      calls[call.index].name += call.function?.name ?? "";
      calls[call.index].arguments += call.function?.arguments ?? "";
    }
  }
  toolCalls = calls.map((c) => ({ ...c, arguments: JSON.parse(c.arguments) }));
}

console.log(JSON.stringify({
  plain: completion.choices[0].message.content,
  plainModel: completion.model,
  streamed,
  streamModels: [...models],
  finishReason,
  usage,
  error,
  toolCalls,
}));
