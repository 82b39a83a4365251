// prisma validate and prisma generate of prisma/schema.prisma with the Prisma
// 7.3 the application pins and with the newest 7.x, plus the partial indexes
// that only Prisma 7.4+ can express (written as `// partialIndexes:` lines).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { APP_DIR, GENERATED_DIR, PACK_SCHEMA, UPSTREAM_SCHEMA } from '../lib/paths.mjs';
import { cliVersion, runPrismaAsync, runPrismaAsyncOk } from '../lib/prisma-cli.mjs';
import { packSchemaText, packSchemaWithPartialIndexes, writeFile } from '../lib/schema-copies.mjs';

const require = createRequire(path.join(APP_DIR, 'package.json'));
const PACK_MODELS = [
  'User', 'Account', 'Session', 'AuthIdentity', 'AuthSession', 'VerificationToken', 'Lab',
  'LabSession', 'VerificationLog', 'ResumeBullet', 'AuditLog', 'LabVersion', 'VerificationAttempt',
  'GitHubRepoMapping', 'LabAttempt', 'GitHubPushDelivery', 'VerificationJob', 'LedgerCheckpoint',
];

test('the package pins prisma and @prisma/client 7.3.x exactly and a newer 7.x as prisma-latest', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(APP_DIR, 'package.json'), 'utf8'));
  const deps = { ...pkg.dependencies, ...pkg.devDependencies };
  assert.match(deps.prisma, /^7\.3\.\d+$/);
  assert.equal(deps['@prisma/client'], deps.prisma);
  assert.equal(deps['@prisma/adapter-pg'], deps.prisma);
  assert.match(deps['prisma-latest'], /^npm:prisma@7\.\d+\.\d+$/);
  assert.equal(cliVersion('pinned'), deps.prisma);
  const [, latestMinor] = cliVersion('latest').split('.').map(Number);
  assert.ok(latestMinor > 3, `prisma-latest is ${cliVersion('latest')}`);
});

test('the header says the schema must never drive prisma migrate or db push', () => {
  const head = fs.readFileSync(PACK_SCHEMA, 'utf8').split('\n').slice(0, 12).join('\n');
  assert.match(head, /DESCRIBES THE DATABASE/);
  assert.match(head, /NEVER DRIVE `prisma migrate` OR\s*\n\/\/\s*`prisma db push`/);
});

describe('the Prisma CLIs on prisma/schema.prisma (run side by side)', { concurrency: 3 }, () => {
  for (const which of ['pinned', 'latest']) {
    test(`prisma validate accepts prisma/schema.prisma (${which})`, async () => {
      const out = await runPrismaAsyncOk(which, ['validate', '--schema', PACK_SCHEMA]);
      assert.match(out, /is valid/);
    });

    test(`prisma generate builds a client with every model from prisma/schema.prisma (${which})`, async () => {
      const dir = path.join(GENERATED_DIR, `check-${which}`);
      fs.rmSync(dir, { recursive: true, force: true });
      const schema = path.join(dir, 'schema.prisma');
      writeFile(schema, packSchemaText('./client'));
      const out = await runPrismaAsyncOk(which, ['generate', '--schema', schema]);
      assert.match(out, new RegExp(`Generated Prisma Client \\(v${cliVersion(which).replace(/\./g, '\\.')}\\)`));
      const { Prisma } = require(path.join(dir, 'client'));
      assert.equal(Prisma.prismaVersion.client, cliVersion(which));
      assert.deepEqual(Object.keys(Prisma.ModelName).sort(), [...PACK_MODELS].sort());
    });
  }

  test('prisma format leaves prisma/schema.prisma as it is (pinned)', async () => {
    const dir = path.join(GENERATED_DIR, 'check-format');
    fs.rmSync(dir, { recursive: true, force: true });
    const copy = path.join(dir, 'schema.prisma');
    writeFile(copy, fs.readFileSync(PACK_SCHEMA, 'utf8'));
    await runPrismaAsyncOk('pinned', ['format', '--schema', copy]);
    assert.equal(fs.readFileSync(copy, 'utf8'), fs.readFileSync(PACK_SCHEMA, 'utf8'));
  });

  test('the partial indexes in comments are valid Prisma for the newest 7.x (partialIndexes) and not for 7.3', async () => {
    const dir = path.join(GENERATED_DIR, 'check-partial-indexes');
    fs.rmSync(dir, { recursive: true, force: true });
    const schema = path.join(dir, 'schema.prisma');
    const { text, attributes } = packSchemaWithPartialIndexes('./client');
    assert.ok(attributes >= 7, `only ${attributes} partialIndexes lines`);
    writeFile(schema, text);
    assert.match(await runPrismaAsyncOk('latest', ['validate', '--schema', schema]), /is valid/);
    const pinned = await runPrismaAsync('pinned', ['validate', '--schema', schema]);
    assert.notEqual(pinned.status, 0, 'Prisma 7.3 should not know the where: argument');
    assert.match(pinned.output, /P1012/);
  });

  test("the app's schema is refused as it stands (url in the datasource, P1012) by Prisma 7", async () => {
    const res = await runPrismaAsync('pinned', ['validate', '--schema', UPSTREAM_SCHEMA]);
    assert.notEqual(res.status, 0);
    assert.match(res.output, /P1012/);
    assert.match(res.output, /url/);
  });
});
