// A real client against a live server: the official `openai` npm package
// (pinned in tools/npm) drives chat completions, streamed and not, with the
// kvmart `kv` extension passed as an extra body field.
//   KVMART_URL=... KVMART_ADMIN_KEY=... node openai_client.mjs NPM_DIR
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const npmDir = process.argv[2];
const { default: OpenAI } = await import(pathToFileURL(path.join(npmDir, 'node_modules/openai/index.mjs')).href);
const url = process.env.KVMART_URL;
const admin = process.env.KVMART_ADMIN_KEY;

async function api(method, route, key, body) {
  const res = await fetch(url + route, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status >= 400) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const pub = await api('POST', '/v1/accounts', admin, { name: 'publisher', scopes: 'publish' });
const buyer = await api('POST', '/v1/accounts', admin, { name: 'buyer', scopes: 'buy' });
await api('POST', `/v1/accounts/${buyer.account_id}/deposits`, admin, { amount: '1' });
const prefix = [
  { role: 'system', content: 'You answer questions about the document.' },
  { role: 'user', content: 'Document: kvmart sells bit-exact loads of precomputed KV caches. '.repeat(8) },
];
const question = [{ role: 'user', content: 'What does kvmart sell?' }];
const art = await api('POST', '/v1/artifacts', pub.api_key, { messages: prefix, price: { per_load: '0.0001' } });
await api('POST', `/v1/artifacts/${art.artifact_id}/purchase`, buyer.api_key, { kind: 'metered', quantity: 5 });

const client = new OpenAI({ apiKey: buyer.api_key, baseURL: url + '/v1', maxRetries: 0 });

// Models.
const models = await client.models.list();
assert.ok(models.data.some((m) => m.id === 'kvmart'));

// Non-streaming, with the kv extension as an extra body field.
const hit = await client.chat.completions.create({
  model: 'kvmart', messages: question, max_tokens: 8, temperature: 0, kv: { artifact: art.artifact_id },
});
assert.equal(hit.object, 'chat.completion');
assert.equal(hit.usage.prompt_tokens_details.cached_tokens, art.tokens);
assert.equal(hit.kv_usage.artifact_id, art.artifact_id);
assert.equal(hit.kv_usage.price.micros, 100);

// The same request without the cache gives the same answer.
const cold = await client.chat.completions.create({
  model: 'kvmart', messages: [...prefix, ...question], max_tokens: 8, temperature: 0,
});
assert.equal(cold.usage.prompt_tokens_details.cached_tokens, 0);
assert.equal(cold.choices[0].message.content, hit.choices[0].message.content);
assert.equal(cold.usage.prompt_tokens, hit.usage.prompt_tokens);

// Streaming with the cache: the deltas add up to the same text; usage last.
const stream = await client.chat.completions.create({
  model: 'kvmart', messages: question, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true }, kv: { artifact: art.artifact_id },
});
let text = '';
let usage = null;
let finish = null;
for await (const chunk of stream) {
  if (chunk.choices.length > 0) {
    text += chunk.choices[0].delta?.content ?? '';
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, hit.choices[0].message.content);
assert.equal(finish, hit.choices[0].finish_reason);
assert.equal(usage.prompt_tokens_details.cached_tokens, art.tokens);

// Seeded sampling is reproducible, with and without the cache.
const s1 = await client.chat.completions.create({
  model: 'kvmart', messages: question, max_tokens: 8, temperature: 0.9, seed: 7, kv: { artifact: art.artifact_id },
});
const s2 = await client.chat.completions.create({
  model: 'kvmart', messages: [...prefix, ...question], max_tokens: 8, temperature: 0.9, seed: 7,
});
assert.equal(s1.choices[0].message.content, s2.choices[0].message.content);

// kv.auto finds the published prefix by itself.
const auto = await client.chat.completions.create({
  model: 'kvmart', messages: [...prefix, ...question], max_tokens: 4, temperature: 0,
  kv: { auto: true, max_price: '0.001' },
});
assert.equal(auto.usage.prompt_tokens_details.cached_tokens, art.tokens);

// Errors arrive as the client's typed errors.
const bad = new OpenAI({ apiKey: 'kvm_nope', baseURL: url + '/v1', maxRetries: 0 });
await assert.rejects(bad.chat.completions.create({ model: 'kvmart', messages: question }),
  (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
await assert.rejects(client.chat.completions.create({
  model: 'kvmart', messages: question, kv: { artifact: 'kv1-' + 'b'.repeat(64) },
}), (e) => e instanceof OpenAI.PermissionDeniedError && e.status === 403);

console.log(`openai client: OK (${art.tokens} cached tokens, text ${JSON.stringify(text)})`);
