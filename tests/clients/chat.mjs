// Drives `ra serve` with the official openai client, as a user's program would.
// usage: node chat.mjs '{"baseURL": ..., "model": ..., "png": FILE, "jpeg": FILE, "pngUrl": URL, "refusedUrl": URL, "apiKey": ..., "stop": [...]}'
// Prints one JSON line: what the client received from each call.
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';

const args = JSON.parse(process.argv[2]);
const client = new OpenAI({ baseURL: args.baseURL, apiKey: args.apiKey ?? 'not-needed', maxRetries: 0, timeout: 120_000 });
const dataUri = (file, type) => `data:${type};base64,${readFileSync(file).toString('base64')}`;
const image = (file, type) => ({ type: 'image_url', image_url: { url: dataUri(file, type) } });

async function collect(stream) {
  const out = { text: '', contentChunks: 0, roles: [], finish: null, usage: null, ids: new Set(), objects: new Set() };
  for await (const chunk of stream) {
    out.ids.add(chunk.id);
    out.objects.add(chunk.object);
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) out.roles.push(c.delta.role);
      if (c.delta.content) { out.text += c.delta.content; out.contentChunks++; }
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return { ...out, ids: [...out.ids], objects: [...out.objects] };
}

const result = { node: process.version };

const models = await client.models.list();
result.models = models.data.map(m => m.id);

// Not streamed: a PNG and the demo model's instruction.
const plain = await client.chat.completions.create({
  model: args.model, temperature: 0,
  messages: [{ role: 'user', content: [image(args.png, 'image/png'), { type: 'text', text: 'describe the scene .' }] }],
});
result.plain = { object: plain.object, text: plain.choices[0].message.content, role: plain.choices[0].message.role,
  finish: plain.choices[0].finish_reason, usage: plain.usage };

// Streamed: a JPEG and no text (the model's own instruction), with usage at the end.
result.stream = await collect(await client.chat.completions.create({
  model: args.model, temperature: 0, stream: true, stream_options: { include_usage: true },
  messages: [{ role: 'user', content: [image(args.jpeg, 'image/jpeg')] }],
}));

// Streamed with stop sequences: the text ends before the first one.
result.stopped = await collect(await client.chat.completions.create({
  model: args.model, temperature: 0, stream: true, stop: args.stop,
  messages: [{ role: 'user', content: [image(args.jpeg, 'image/jpeg')] }],
}));

// The PNG by URL (the server fetches it): the same answer.
if (args.pngUrl) {
  const byUrl = await client.chat.completions.create({
    model: args.model, temperature: 0,
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: args.pngUrl } }, { type: 'text', text: 'describe the scene .' }] }],
  });
  result.byUrl = { text: byUrl.choices[0].message.content, usage: byUrl.usage };
}

// Log-probabilities of the PNG's answer, as the client types them.
const withLogprobs = await client.chat.completions.create({
  model: args.model, temperature: 0, logprobs: true, top_logprobs: 2,
  messages: [{ role: 'user', content: [image(args.png, 'image/png'), { type: 'text', text: 'describe the scene .' }] }],
});
result.logprobs = { text: withLogprobs.choices[0].message.content,
  content: withLogprobs.choices[0].logprobs.content.map(t => ({ token: t.token, logprob: t.logprob, top: t.top_logprobs.map(a => a.token) })) };

// A refused request surfaces as the client's typed error.
try {
  await client.chat.completions.create({
    model: args.model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: args.refusedUrl ?? 'https://example.com/cat.png' } }] }],
  });
  result.error = null;
} catch (e) {
  result.error = { class: e.constructor.name, status: e.status, type: e.type, code: e.code, param: e.param, message: e.message };
}

console.log(JSON.stringify(result));
