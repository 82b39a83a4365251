// Generates the two clients the suite runs, with the pinned Prisma 7.3:
//   generated/app/node_modules/@prisma/client  the application's CURRENT client,
//       from ../shared/upstream/prisma/schema.prisma with only its url line removed;
//   generated/pack-client                      the NEW client, from prisma/schema.prisma.
// Skipped when generated/.stamp records the same inputs (schemas, lockfile,
// this package's lib and scripts). Run before `node --test` (npm test does).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  APP_CLIENT_DIR, APP_DIR, APP_SCHEMA_COPY, GENERATED_DIR, PACK_CLIENT_DIR,
  PACK_CLIENT_OUTPUT_IN_COPY, PACK_SCHEMA, PACK_SCHEMA_COPY, UPSTREAM_SCHEMA,
} from '../lib/paths.mjs';
import { cliVersion, runPrismaOk } from '../lib/prisma-cli.mjs';
import { appSchemaText, packSchemaText, writeFile } from '../lib/schema-copies.mjs';

const STAMP = path.join(GENERATED_DIR, '.stamp');

function inputsDigest() {
  const h = crypto.createHash('sha256');
  const files = [
    PACK_SCHEMA, UPSTREAM_SCHEMA, path.join(APP_DIR, 'package-lock.json'),
    path.join(APP_DIR, 'lib', 'paths.mjs'), path.join(APP_DIR, 'lib', 'schema-copies.mjs'),
    new URL(import.meta.url).pathname,
  ];
  for (const f of files) h.update(`${f}\n`).update(fs.readFileSync(f));
  h.update(cliVersion('pinned'));
  return h.digest('hex');
}

const digest = inputsDigest();
const upToDate = fs.existsSync(STAMP) && fs.readFileSync(STAMP, 'utf8') === digest
  && fs.existsSync(path.join(APP_CLIENT_DIR, 'index.js'))
  && fs.existsSync(path.join(PACK_CLIENT_DIR, 'index.js'));

if (upToDate) {
  console.log('generate-clients: up to date');
} else {
  const t0 = Date.now();
  fs.rmSync(STAMP, { force: true });
  // A previous output must go first: the CLI resolves @prisma/client from the
  // schema's directory and would find the generated package instead.
  for (const dir of [path.join(GENERATED_DIR, 'app'), path.join(GENERATED_DIR, 'pack-schema'), PACK_CLIENT_DIR]) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  writeFile(APP_SCHEMA_COPY, appSchemaText());
  runPrismaOk('pinned', ['generate', '--schema', APP_SCHEMA_COPY]);
  writeFile(PACK_SCHEMA_COPY, packSchemaText(PACK_CLIENT_OUTPUT_IN_COPY));
  runPrismaOk('pinned', ['generate', '--schema', PACK_SCHEMA_COPY]);
  fs.writeFileSync(STAMP, digest);
  console.log(`generate-clients: generated both clients with prisma ${cliVersion('pinned')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
