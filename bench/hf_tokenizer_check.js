// Checks that Hugging Face's own tokenizers library (the Rust implementation, through its
// Node binding: `npm install tokenizers@0.23.2` in any directory) loads a dsmoe4j
// tokenizer.json and encodes exactly as dsmoe4j does.
//
//   node bench/hf_tokenizer_check.js TOKENIZER.json FILE...
//
// For each FILE it encodes the whole text with HF and with `./dsmoe tokenize` and reports
// whether the ids are identical. Exit status 1 on any difference.
const { Tokenizer } = require('tokenizers');
const { execFileSync } = require('child_process');
const fs = require('fs');

(async () => {
  const [tokFile, ...files] = process.argv.slice(2);
  if (!tokFile || files.length === 0) {
    console.error('usage: node bench/hf_tokenizer_check.js TOKENIZER.json FILE...');
    process.exit(2);
  }
  const hf = Tokenizer.fromFile(tokFile);
  let same = 0, tokens = 0;
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    const ids = Array.from((await hf.encode(text, undefined, { addSpecialTokens: false })).getIds());
    const ours = JSON.parse(execFileSync('./dsmoe', ['tokenize', '--tokenizer', tokFile, '--input', f],
      { maxBuffer: 1 << 28 }).toString());
    const ok = ids.length === ours.length && ids.every((v, i) => v === ours[i]);
    if (ok) same++; else console.log(`DIFF ${f}: HF ${ids.length} ids, dsmoe4j ${ours.length}`);
    tokens += ids.length;
  }
  console.log(`${same} of ${files.length} files encode identically (${tokens} tokens)`);
  process.exit(same === files.length ? 0 : 1);
})();
