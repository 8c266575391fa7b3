#!/usr/bin/env node
// Builds tiny tokenizer.json files with the real structure of each family's tokenizer (normalizer,
// pre_tokenizer, model options, added_tokens, post_processor, decoder) and a vocabulary trained
// here on a small corpus, then records how Hugging Face's own `tokenizers` library (the Rust
// implementation, through its npm binding) encodes and decodes test strings with them:
// expected.json. TextTokenizerReferenceTests must match it id for id.
//
//   cd $(mktemp -d) && npm install tokenizers@0.23.2 && NODE_PATH=$PWD/node_modules node <repo>/tests/RealtimeAssistant.Tests/Fixtures/tokenizers/regen.js
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');
const tokenizersVersion = require('tokenizers/package.json').version;

const HERE = __dirname;
const CORPUS = [
  'Hello world! The quick brown fox jumps over the lazy dog. What is shown in this image?',
  'A red circle moves to the left of the frame, then a blue square enters from the top.',
  'Describe the scene in one sentence. The image shows a person riding a bicycle on the street.',
  'user assistant system You are a helpful assistant. Picture Video caption frame frames',
  'def forward(self, x):\n    return self.proj(x) ** 2  # comment\n\n\tindented\r\nline',
  "It's the model's answer; don't you think? They're here, we'll see, I've been, I'd say, I'm done.",
  'Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000 version 2.0.1',
  'Le café est très bon, déjà vu, naïve façade. Ça va?',
  '中文 测试 日本語 テキスト',
  'the the the there then these those this that thing think thought through',
  'image images imagine video videos visual vision token tokens tokenizer',
  '    four spaces and  two   three     five',
];

// GPT-2's reversible byte <-> printable-character table.
function byteChars() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const map = new Array(256);
  bs.forEach((b, i) => { map[b] = String.fromCodePoint(cs[i]); });
  return map;
}
const BYTE = byteChars();
const toByteLevel = (s) => Array.from(Buffer.from(s, 'utf8')).map((b) => BYTE[b]).join('');

// A plain BPE trainer: repeatedly merges the most frequent adjacent pair (ties: smallest pair).
function train(words, numMerges, allowed = () => true) {
  const items = [...words.entries()].map(([w, count]) => ({ syms: Array.from(w), count }));
  const merges = [];
  for (let m = 0; m < numMerges; m++) {
    const counts = new Map();
    for (const { syms, count } of items)
      for (let i = 0; i + 1 < syms.length; i++) {
        if (!allowed(syms[i]) || !allowed(syms[i + 1])) continue;
        const key = syms[i] + '\u0000' + syms[i + 1];
        counts.set(key, (counts.get(key) || 0) + count);
      }
    let best = null, bestCount = 1;
    for (const [k, c] of counts) if (c > bestCount || (c === bestCount && best !== null && k < best)) { best = k; bestCount = c; }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    merges.push([a, b]);
    for (const it of items) {
      const out = [];
      for (let i = 0; i < it.syms.length; i++) {
        if (i + 1 < it.syms.length && it.syms[i] === a && it.syms[i + 1] === b) { out.push(a + b); i++; } else out.push(it.syms[i]);
      }
      it.syms = out;
    }
  }
  return merges;
}

function count(list) {
  const m = new Map();
  for (const w of list) if (w.length) m.set(w, (m.get(w) || 0) + 1);
  return m;
}

function added(id, content, special = true, extra = {}) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special, ...extra };
}

const QWEN_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2_RE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function byteLevelBpe({ preTokenize, merges: numMerges, specials, mergesAsPairs, ignoreMerges }) {
  const words = count(CORPUS.flatMap((t) => preTokenize(t.normalize('NFC'))).map(toByteLevel));
  const merges = train(words, numMerges);
  const vocab = {};
  let id = 0;
  for (let b = 0; b < 256; b++) vocab[BYTE[b]] = id++; // id order need not follow bytes; real files differ
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = id++;
  const addedTokens = specials.map((s, i) => added(id + i, ...(Array.isArray(s) ? s : [s])));
  return {
    vocab, addedTokens,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: ignoreMerges, vocab,
      merges: mergesAsPairs ? merges : merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

function qwen2() {
  const re = new RegExp(QWEN_RE.replace('(?i:', '(?:'), 'gu');
  const { addedTokens, model } = byteLevelBpe({
    preTokenize: (t) => t.match(re) || [], merges: 180, mergesAsPairs: false, ignoreMerges: false,
    specials: ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|image_pad|>', '<|video_pad|>',
      ['<tool_call>', false]],
  });
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens,
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: QWEN_RE }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model,
  };
}

function smollm2() {
  const split = (t) => t.split(/(\p{N})/u).flatMap((p) => /^\p{N}$/u.test(p) ? [p] : (p.match(GPT2_RE) || []));
  const { addedTokens, model } = byteLevelBpe({
    preTokenize: split, merges: 180, mergesAsPairs: false, ignoreMerges: false,
    specials: ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<fake_token_around_image>', '<image>', ['<end_of_utterance>', true], '<global-img>', '<row_1_col_1>', '<row_1_col_2>'],
  });
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }] },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model,
  };
}

function llama3() {
  const re = new RegExp(LLAMA3_RE.replace('(?i:', '(?:'), 'gu');
  const { addedTokens, model } = byteLevelBpe({
    preTokenize: (t) => t.match(re) || [], merges: 180, mergesAsPairs: true, ignoreMerges: true,
    specials: ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>',
      ['<fake_token_around_image>', true, { lstrip: true }], ['<image>', true, { rstrip: true }], ['<end_of_utterance>', true]],
  });
  const bos = addedTokens[0];
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: LLAMA3_RE }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: { type: 'Sequence', processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
               { SpecialToken: { id: bos.content, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } } }] },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model,
  };
}

// LLaMA/Vicuna (llava-1.5): sentencepiece BPE in HF form: '▁' for spaces, byte fallback.
const EXCLUDED = new Set(Array.from('éèçïàÇ中文测试日本語テキスト'));
function llamaVocab() {
  const normalized = CORPUS.map((t) => '▁' + t.replace(/ /g, '▁'));
  const words = count(normalized.flatMap((t) => t.match(/▁*[^▁]+|▁+/gu) || []));
  const merges = train(words, 220, (s) => !Array.from(s).some((c) => EXCLUDED.has(c)));
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  let id = 3;
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = id++;
  const chars = [...new Set(normalized.flatMap((t) => Array.from(t)))].filter((c) => !EXCLUDED.has(c)).sort();
  for (const c of chars) if (!(c in vocab)) vocab[c] = id++;
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = id++;
  return { vocab, merges, size: id };
}

function llamaCommon(vocab, merges) {
  return {
    type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
  };
}

function llamaPost() {
  return { type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
           { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } };
}

function llamaAdded(size) {
  return [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>'), added(size, '<image>'), added(size + 1, '<pad>')];
}

function llamaLegacy() {
  const { vocab, merges, size } = llamaVocab();
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: llamaAdded(size),
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '▁' },
      { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: llamaPost(),
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: llamaCommon(vocab, merges),
  };
}

function llamaMetaspace() {
  const { vocab, merges, size } = llamaVocab();
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: llamaAdded(size),
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: llamaPost(),
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: llamaCommon(vocab, merges),
  };
}

const TOKENIZERS = {
  'qwen2': qwen2(),
  'smollm2': smollm2(),
  'llama3': llama3(),
  'llama-legacy': llamaLegacy(),
  'llama-metaspace': llamaMetaspace(),
};

const TEXTS = [
  '', 'Hello world', ' leading space', 'trailing space ', '   ', 'a',
  'hello  world   with   spaces\n\nand newlines\ttabs',
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n<|im_start|>assistant\n',
  'USER: <image>\nWhat is shown in this image? ASSISTANT:',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
  '<|im_start|>User:<fake_token_around_image><global-img><image><fake_token_around_image> Describe.<end_of_utterance>\nAssistant:',
  'a<s>b</s>c <s> d',
  'Numbers 12345 and 3.14, version 2.0.1; 1000000',
  'Café déjà vu — naïve façade. Ça!',
  'e\u0301 composed by NFC',
  '日本語のテキスト 🙂 emoji 👍🏽',
  "don't I'll we're THEY'RE it's",
  'def f(x):\n    return x**2  # comment\r\nend',
  'ℌ𝔢𝔩𝔩𝔬 ﬁ \u00a0nbsp\u2028sep',
  'The quick brown fox jumps over the lazy dog.',
  'x <fake_token_around_image> y <image>  z <tool_call>\n<|im_end|>',
  '<|im_start|><|im_start|>user',
];

async function main() {
  const expected = { tokenizers: tokenizersVersion, cases: {} };
  for (const [name, json] of Object.entries(TOKENIZERS)) {
    const file = path.join(HERE, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify(json, null, 1) + '\n');
    const tok = Tokenizer.fromFile(file);
    const cases = [];
    for (const text of TEXTS) {
      const withSpecial = await tok.encode(text, null, { addSpecialTokens: true });
      const without = await tok.encode(text, null, { addSpecialTokens: false });
      cases.push({
        text,
        ids: without.getIds(),
        ids_with_special_tokens: withSpecial.getIds(),
        tokens: without.getTokens(),
        decoded: await tok.decode(without.getIds(), true),
      });
    }
    expected.cases[name] = cases;
  }
  fs.writeFileSync(path.join(HERE, 'expected.json'), JSON.stringify(expected, null, 1) + '\n');
  console.log(`wrote ${Object.keys(TOKENIZERS).length} tokenizers x ${TEXTS.length} texts with tokenizers ${tokenizersVersion}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
