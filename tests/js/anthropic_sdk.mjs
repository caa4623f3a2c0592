// usage: node anthropic_sdk.mjs BASE_URL MODEL TOOL_MODEL ERROR_MODEL — the @anthropic-ai/sdk npm package against
// the gateway's /v1/messages: a plain message, a stream through messages.stream() (its text events and
// finalMessage()), a tool-use round trip (streamed first turn, the tool_result turn as a plain create) and a
// request whose upstream refuses it (ERROR_MODEL: a 429 upstream).
// Prints one JSON line with what came back; tests/test_messages_js.py checks it.
import Anthropic from "@anthropic-ai/sdk";

const [baseURL, model, toolModel, errorModel] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey: "sk-js-client", maxRetries: 0 });
const messages = [{ role: "user", content: "Hello" }];

const message = await client.messages.create({ model, max_tokens: 64, messages });

const stream = client.messages.stream({ model, max_tokens: 64, messages });
let streamed = "";
const eventTypes = new Set();
stream.on("text", (text) => {
  streamed += text;
});
stream.on("streamEvent", (event) => {
  eventTypes.add(event.type);
});
const final = await stream.finalMessage();

const weather = {
  name: "get_weather",
  description: "Weather for a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const toolMessages = [{ role: "user", content: "Weather?" }];
const first = await client.messages.stream({ model: toolModel, max_tokens: 64, tools: [weather], messages: toolMessages })
  .finalMessage();
const uses = first.content.filter((block) => block.type === "tool_use");
toolMessages.push({ role: "assistant", content: first.content });
toolMessages.push({
  role: "user",
  content: uses.map((use) => ({ type: "tool_result", tool_use_id: use.id, content: "sunny" })),
});
const second = await client.messages.create({ model: toolModel, max_tokens: 64, tools: [weather], messages: toolMessages });

let error = null;
try {
  await client.messages.create({ model: errorModel, max_tokens: 16, messages });
} catch (err) {
  error = {
    status: err.status,
    name: err.constructor.name,
    isRateLimit: err instanceof Anthropic.RateLimitError,
    type: err.error?.error?.type ?? null,
    retryAfter: err.headers?.get?.("retry-after") ?? null,
  };
}

const textOf = (msg) => msg.content.filter((block) => block.type === "text").map((block) => block.text).join("");
console.log(JSON.stringify({
  plain: textOf(message),
  plainType: message.type,
  plainModel: message.model,
  plainStop: message.stop_reason,
  plainUsage: message.usage,
  streamed,
  finalText: textOf(final),
  finalModel: final.model,
  finalStop: final.stop_reason,
  finalUsage: final.usage,
  eventTypes: [...eventTypes].sort(),
  toolStop: first.stop_reason,
  toolUses: uses.map((use) => ({ id: use.id, name: use.name, input: use.input })),
  toolAnswer: textOf(second),
  error,
}));
