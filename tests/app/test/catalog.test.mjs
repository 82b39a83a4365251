// prisma/schema.prisma must follow the database: compared with the live
// catalog of a production database migrated by the pack and of a database
// built by the chain alone; and the comparison is shown to fail when a
// migration changes a table and the schema does not follow.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { dsn, pgClient, roleDsn } from '../lib/clients.mjs';
import { compareSchemaToCatalog, readCatalog, schemaModel } from '../lib/catalog.mjs';
import { PACK_SCHEMA } from '../lib/paths.mjs';
import { appSchemaText } from '../lib/schema-copies.mjs';

const packText = fs.readFileSync(PACK_SCHEMA, 'utf8');
const packDmmf = schemaModel(packText);
let prod;
let fresh;
let prodCatalog;

before(async () => {
  prod = await pgClient(roleDsn('owner'));
  fresh = await pgClient(dsn('FORGEA_FRESH_DSN_OWNER'));
  prodCatalog = await readCatalog(prod);
});
after(async () => {
  await prod?.end();
  await fresh?.end();
});

const report = (diffs) => `\n  ${diffs.join('\n  ')}`;

test('prisma/schema.prisma matches the catalog of production migrated by the pack', () => {
  const diffs = compareSchemaToCatalog(packDmmf, prodCatalog, packText);
  assert.deepEqual(diffs, [], `prisma/schema.prisma does not follow the database:${report(diffs)}`);
  assert.equal(Object.keys(prodCatalog.tables).length, packDmmf.datamodel.models.length);
});

test('prisma/schema.prisma matches the catalog of a database built by the chain alone', async () => {
  const catalog = await readCatalog(fresh);
  const diffs = compareSchemaToCatalog(packDmmf, catalog, packText);
  assert.deepEqual(diffs, [], `prisma/schema.prisma does not follow the database:${report(diffs)}`);
});

test("the app's current schema does not match the migrated database, and the check says where", () => {
  const text = appSchemaText();
  const diffs = compareSchemaToCatalog(schemaModel(text), prodCatalog, text);
  for (const expected of [
    'table "LabVersion" exists in the database but has no model',
    'table "VerificationJob" exists in the database but has no model',
    'column "LabSession"."labVersionId" exists in the database but LabSession has no field for it',
    'column "LabSession"."completedAt" exists in the database but LabSession has no field for it',
    'enum "LabStatus": database labels [IN_PROGRESS, STUCK, VERIFIED_PASS, DEFERRED, FAILED], schema values [IN_PROGRESS, STUCK, VERIFIED_PASS, DEFERRED]',
    'enum "VerificationResult" exists in the database but not in the schema',
  ]) {
    assert.ok(diffs.includes(expected), `missing: ${expected}${report(diffs)}`);
  }
});

test('a migration that changes tables without prisma/schema.prisma following is caught', async () => {
  // Real DDL on the chain-built database, inside a transaction that is rolled back.
  await fresh.query('BEGIN');
  try {
    await fresh.query(`
      ALTER TABLE "LabAttempt" ADD COLUMN "reviewNote" text;
      ALTER TABLE "VerificationJob" ALTER COLUMN "errorMessage" SET NOT NULL;
      ALTER TABLE "GitHubRepoMapping" ALTER COLUMN "defaultBranch" TYPE varchar(255);
      ALTER TABLE "VerificationAttempt" ALTER COLUMN "createdAt" SET DEFAULT now();
      ALTER TYPE "VerificationResult" ADD VALUE 'SKIPPED';
      CREATE TABLE "LabReview" ("id" uuid PRIMARY KEY, "sessionId" uuid NOT NULL REFERENCES "LabSession" ("id"));
      ALTER TABLE "LabVersion" ADD CONSTRAINT "LabVersion_repoVersion_check" CHECK (length("repoVersion") > 0);
      CREATE INDEX "LabAttempt_pushedAt_idx" ON "LabAttempt" ("pushedAt");
      DROP INDEX "GitHubPushDelivery_sessionId_idx";
      CREATE UNIQUE INDEX "LabAttempt_branch_active_key" ON "LabAttempt" ("branch") WHERE "authorLogin" IS NULL;
    `);
    const diffs = compareSchemaToCatalog(packDmmf, await readCatalog(fresh), packText);
    for (const expected of [
      'column "LabAttempt"."reviewNote" exists in the database but LabAttempt has no field for it',
      'VerificationJob.errorMessage: optional in the schema, but the column is NOT NULL',
      'GitHubRepoMapping.defaultBranch: the schema means text, the column is character varying(255)',
      'VerificationAttempt.createdAt: @default(dbgenerated("timezone(\'UTC\'::text, now())")) but the column default is now()',
      'enum "VerificationResult": database labels [PASS, FAIL, SKIPPED], schema values [PASS, FAIL]',
      'table "LabReview" exists in the database but has no model',
      'CHECK constraint "LabVersion_repoVersion_check" on "LabVersion" is not named in a schema comment',
      'index "LabAttempt_pushedAt_idx" (pushedAt) on "LabAttempt" is not in the schema',
      'GitHubPushDelivery: (sessionId) index "GitHubPushDelivery_sessionId_idx" is not in the database',
      'partial index "LabAttempt_branch_active_key" on "LabAttempt" has no `// partialIndexes:` line in the schema',
    ]) {
      assert.ok(diffs.includes(expected), `missing: ${expected}${report(diffs)}`);
    }
  } finally {
    await fresh.query('ROLLBACK');
  }
  assert.deepEqual(compareSchemaToCatalog(packDmmf, await readCatalog(fresh), packText), []);
});

// Schema edits against the real catalog: each must produce the difference named.
const EDITS = [
  ['a field removed', '  completedAt    DateTime?\n', '',
    'column "LabSession"."completedAt" exists in the database but LabSession has no field for it'],
  ['a required field made optional', '  commitSha    String\n  /// X-GitHub-Delivery', '  commitSha    String?\n  /// X-GitHub-Delivery',
    'LabAttempt.commitSha: optional in the schema, but the column is NOT NULL'],
  ['a type changed', '  versionNumber Int\n', '  versionNumber BigInt\n',
    'LabVersion.versionNumber: the schema means bigint, the column is integer'],
  ['a native type dropped', '  labVersionId   String                @db.Uuid\n', '  labVersionId   String\n',
    'VerificationJob.labVersionId: the schema means text, the column is uuid'],
  ['an enum value removed', '  VERIFIED_PASS\n  DEFERRED\n  FAILED\n', '  VERIFIED_PASS\n  DEFERRED\n',
    'enum "LabStatus": database labels [IN_PROGRESS, STUCK, VERIFIED_PASS, DEFERRED, FAILED], schema values [IN_PROGRESS, STUCK, VERIFIED_PASS, DEFERRED]'],
  ['a default that is not the database\'s', '  runCount       Int                   @default(0)\n', '  runCount       Int                   @default(1)\n',
    'VerificationJob.runCount: @default(1) but the column default is 0'],
  ['a trigger-filled field without its trigger named', "/// Filled by trigger labsession_version_default when omitted (the lab's", "/// Filled by a trigger when omitted (the lab's",
    'LabSession.labVersionId: @default(dbgenerated()) needs a /// comment naming the BEFORE INSERT trigger that fills it'],
  ['a composite foreign key without its map', ', map: "LabSession_labVersionId_fkey")', ')',
    'LabSession.labVersion: the foreign key is "LabSession_labVersionId_fkey" in the database, "LabSession_labVersionId_labId_fkey" by the schema (map: missing)'],
  ['a referential action changed', 'lab              Lab               @relation(fields: [labId], references: [id], onDelete: Restrict, onUpdate: Restrict)',
    'lab              Lab               @relation(fields: [labId], references: [id], onDelete: Restrict)',
    'LabVersion.lab: onUpdate Cascade in the schema, ON UPDATE Restrict on "LabVersion_labId_fkey"'],
  ['a relation without a foreign key not declared as such', '  /// No foreign key in the database (record_push writes', '  /// The job (record_push writes',
    'GitHubPushDelivery.verificationJob: relation (verificationJobId) -> "VerificationJob" (id) has no foreign key in the database (say so in a /// comment if that is meant)'],
  ['a unique index removed', '  @@unique([deliveryId, commitSha])\n', '',
    'index "LabAttempt_deliveryId_commitSha_key" UNIQUE (deliveryId, commitSha) on "LabAttempt" is not in the schema'],
  ['a trigger no comment names', 'verificationjob_no_truncate (FA001)', 'a TRUNCATE guard (FA001)',
    'trigger verificationjob_no_truncate on "VerificationJob" is not named in a schema comment'],
  ['a partial index described wrongly', 'where: raw("\\"sessionActive\\""))\n// partialIndexes: @@unique([repoUrl]', 'where: raw("NOT \\"sessionActive\\""))\n// partialIndexes: @@unique([repoUrl]',
    'partial index "GitHubRepoMapping_providerRepoId_active_key": the database has UNIQUE (providerRepoId) WHERE "sessionActive"; the comment says UNIQUE (providerRepoId) WHERE NOT "sessionActive"'],
];

for (const [what, from, to, expected] of EDITS) {
  test(`the check reports ${what}`, () => {
    assert.ok(packText.includes(from), `edit "${what}" no longer applies to prisma/schema.prisma`);
    const text = packText.replace(from, to);
    const diffs = compareSchemaToCatalog(schemaModel(text), prodCatalog, text);
    assert.ok(diffs.includes(expected), `missing: ${expected}${report(diffs)}`);
  });
}

test('the check reports a column dropped from the catalog', () => {
  const catalog = structuredClone(prodCatalog);
  delete catalog.tables.VerificationJob.columns.exitCode;
  const diffs = compareSchemaToCatalog(packDmmf, catalog, packText);
  assert.deepEqual(diffs, ['VerificationJob.exitCode: no column "VerificationJob"."exitCode" in the database']);
});
