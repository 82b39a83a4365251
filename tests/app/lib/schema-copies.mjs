// The schema texts the suite generates clients from, derived at run time.
import fs from 'node:fs';
import path from 'node:path';
import { PACK_SCHEMA, UPSTREAM_SCHEMA } from './paths.mjs';

const URL_LINE = /^\s*url\s*=\s*env\(.*\)\s*$/;
const OUTPUT_LINE = /^(\s*output\s*=\s*)"[^"]*"\s*$/;

function replaceOneLine(text, pattern, replace, what) {
  const lines = text.split('\n');
  const hits = lines.map((l, i) => (pattern.test(l) ? i : -1)).filter((i) => i >= 0);
  if (hits.length !== 1) {
    throw new Error(`${what}: expected exactly one matching line, found ${hits.length}`);
  }
  const replaced = replace(lines[hits[0]]);
  if (replaced === null) lines.splice(hits[0], 1);
  else lines[hits[0]] = replaced;
  return lines.join('\n');
}

// The app's schema.prisma with ONLY its datasource url line removed (Prisma 7
// rejects `url = env(...)` with P1012; the app passes the URL to the adapter).
export function appSchemaText() {
  return replaceOneLine(fs.readFileSync(UPSTREAM_SCHEMA, 'utf8'), URL_LINE, () => null,
    'upstream schema.prisma datasource url');
}

// prisma/schema.prisma with its generator output replaced by `output`.
export function packSchemaText(output) {
  return replaceOneLine(fs.readFileSync(PACK_SCHEMA, 'utf8'), OUTPUT_LINE,
    (line) => line.replace(OUTPUT_LINE, `$1"${output}"`), 'prisma/schema.prisma generator output');
}

// prisma/schema.prisma with the `partialIndexes` preview feature switched on
// and every `// partialIndexes: <attribute>` comment line placed, as that
// attribute, at the end of the model that follows it (Prisma 7.4 and later).
export function packSchemaWithPartialIndexes(output) {
  const out = [];
  let pending = [];
  let current = [];
  let attributes = 0;
  for (const line of packSchemaText(output).split('\n')) {
    const m = line.match(/^\/\/ partialIndexes: (.*)$/);
    if (m) pending.push(m[1]);
    if (/^model \w+ \{/.test(line)) {
      current = pending;
      pending = [];
    }
    if (line === '}' && current.length) {
      for (const attr of current) out.push(`  ${attr}`);
      attributes += current.length;
      current = [];
    }
    out.push(line);
    if (/^\s*provider\s*=\s*"prisma-client-js"\s*$/.test(line)) {
      out.push('  previewFeatures = ["partialIndexes"]');
    }
  }
  if (pending.length) throw new Error(`partialIndexes lines after the last model: ${pending.join('; ')}`);
  return { text: out.join('\n'), attributes };
}

export function writeFile(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}
