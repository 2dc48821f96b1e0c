// Drives a running `./dsmoe serve` with the official openai npm client, as a user would.
//   node client.mjs BASE_URL API_KEY MODEL
// Prints one JSON object with what the client saw (OpenAiNodeClientTest asserts on it) and exits
// 0; any exception the client raises where none is expected ends it with status 1.
import OpenAI, { APIError, BadRequestError } from 'openai';

const [base, apiKey, model] = process.argv.slice(2);
if (!base || !apiKey || !model) {
  console.error('usage: node client.mjs BASE_URL API_KEY MODEL');
  process.exit(2);
}
// No retries: a failure must show, not be hidden by a second try.
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
// Greedy and of a fixed length: the same prompt gives the same text, streamed or not.
const fixed = { temperature: 0, ignore_eos: true };
const messages = [
  { role: 'system', content: 'You write Java.' },
  { role: 'user', content: 'class' },
];
const out = {};

// The model list, as clients check it before they start.
out.models = (await client.models.list()).data.map((m) => m.id);

// A completion, then the same one streamed (with include_usage).
const completion = await client.completions.create({ model, prompt: 'class A {', max_tokens: 6, ...fixed });
out.completion = {
  object: completion.object,
  text: completion.choices[0].text,
  finish_reason: completion.choices[0].finish_reason,
  usage: completion.usage,
};
{
  const stream = await client.completions.create({
    model, prompt: 'class A {', max_tokens: 6, stream: true, stream_options: { include_usage: true }, ...fixed,
  });
  let text = '', chunks = 0, finish = null, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  out.completionStream = { text, chunks, finish_reason: finish, usage };
}

// A chat completion, the same streamed chunk by chunk, and through the client's stream helper
// (which assembles the chunks into a ChatCompletion and checks their shape on the way).
const chat = await client.chat.completions.create({ model, messages, max_completion_tokens: 4, ...fixed });
out.chat = {
  object: chat.object,
  role: chat.choices[0].message.role,
  content: chat.choices[0].message.content,
  finish_reason: chat.choices[0].finish_reason,
  usage: chat.usage,
};
{
  const stream = await client.chat.completions.create({ model, messages, max_completion_tokens: 4, stream: true, ...fixed });
  let content = '', role = null, finish = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      content += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  out.chatStream = { role, content, finish_reason: finish, chunks };
}
{
  const helper = client.chat.completions.stream({
    model, messages, max_completion_tokens: 4, stream_options: { include_usage: true }, ...fixed,
  });
  let deltas = '';
  helper.on('content', (delta) => { deltas += delta; });
  const final = await helper.finalChatCompletion();
  out.chatStreamHelper = {
    deltas,
    content: final.choices[0].message.content,
    finish_reason: final.choices[0].finish_reason,
    usage: final.usage,
  };
}

// 16 streams at once, each of its own prompt and length.
out.concurrent = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
  const prompt = `class C${i} { int v${'x'.repeat(i % 5)} =`;
  const maxTokens = 4 + (i % 6);
  const stream = await client.completions.create({
    model, prompt, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true }, ...fixed,
  });
  let text = '', finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { prompt, max_tokens: maxTokens, text, finish_reason: finish, completion_tokens: usage?.completion_tokens ?? null };
}));

// Requests past the context: the client raises APIError (BadRequestError) with status 400 and
// the server's code and param; so for a stream, before any chunk.
async function failure(call) {
  try {
    const r = await call();
    if (r && typeof r[Symbol.asyncIterator] === 'function') for await (const _ of r) { /* drain */ }
    return { raised: false };
  } catch (e) {
    if (!(e instanceof APIError)) throw e;
    return {
      raised: true, apiError: true, badRequest: e instanceof BadRequestError,
      status: e.status, code: e.code ?? null, param: e.param ?? null, type: e.type ?? null, message: e.message,
    };
  }
}
const long = 'class A { int x; } '.repeat(200);
out.overlong = {
  completion: await failure(() => client.completions.create({ model, prompt: long, max_tokens: 4 })),
  completionStream: await failure(() => client.completions.create({ model, prompt: long, max_tokens: 4, stream: true })),
  chat: await failure(() => client.chat.completions.create({ model, messages: [{ role: 'user', content: long }], max_completion_tokens: 4 })),
  maxTokens: await failure(() => client.completions.create({ model, prompt: 'class', max_tokens: 100_000 })),
};

console.log(JSON.stringify(out));
