// `npm run build`: minify ../gateway/static/gw.js into the committed ../gateway/static/gw.min.js.
//
// The first line of the output names the SHA-256 of the source it was built from, so the test
// suite (which has no node) can tell when someone edited gw.js and forgot to rebuild.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { minify } from 'terser';

const source = new URL('../gateway/static/gw.js', import.meta.url);
const target = new URL('../gateway/static/gw.min.js', import.meta.url);

const bytes = readFileSync(source);
const sha256 = createHash('sha256').update(bytes).digest('hex');
const result = await minify(bytes.toString('utf8'), {
  ecma: 2017,
  compress: { passes: 2 },
  mangle: true,
  format: {
    comments: false,
    preamble: `/*! tag-gateway gw.js, docs/snippet.md; source-sha256:${sha256} */`,
  },
});
writeFileSync(target, result.code + '\n');
console.log(`wrote ${target.pathname}: ${result.code.length + 1} bytes`);
