// How the pack's refusals arrive through Prisma 7 (driver adapter, no engine):
//   model API         -> DriverAdapterError; err.cause.code is the SQLSTATE
//   $queryRaw / $executeRaw -> PrismaClientKnownRequestError P2010;
//                        err.meta.driverAdapterError.cause.originalCode
//   unique violation  -> P2002 (model API) with the constraint's fields in
//                        err.meta.driverAdapterError.cause.constraint; its
//                        name only in ...cause.originalMessage
// The README shows these shapes; this file proves them, for the app's
// current client and for the client generated from prisma/schema.prisma.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { appClient, disconnectAll, loadAppClientModule, loadPackClientModule, packClient } from '../lib/clients.mjs';
import { createLab, createUser, forkOf, sqlState } from '../lib/fixtures.mjs';

const clients = {};
before(() => {
  clients.current = { prisma: appClient('app'), Prisma: loadAppClientModule().Prisma };
  clients.pack = { prisma: packClient('app'), Prisma: loadPackClientModule().Prisma };
});
after(disconnectAll);

for (const which of ['current', 'pack']) {
  describe(`${which} client`, () => {
    let prisma;
    let Prisma;
    let session;
    before(async () => {
      ({ prisma, Prisma } = clients[which]);
      const user = await createUser(prisma);
      const lab = await createLab(prisma);
      session = await prisma.labSession.create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } });
    });

    test('model API: a DriverAdapterError whose cause carries the SQLSTATE and the message', async () => {
      const err = await prisma.labSession
        .update({ where: { id: session.id }, data: { status: 'VERIFIED_PASS' } })
        .catch((e) => e);
      assert.equal(err.name, 'DriverAdapterError');
      assert.ok(!(err instanceof Prisma.PrismaClientKnownRequestError));
      assert.equal(err.cause.kind, 'postgres');
      assert.equal(err.cause.code, 'FL002');
      assert.equal(err.cause.originalCode, 'FL002');
      assert.equal(err.message, `LabSession ${session.id}: VERIFIED_PASS refused: the session has no PASS VerificationAttempt`);
      assert.equal(sqlState(err), 'FL002');

      await prisma.labSession.update({ where: { id: session.id }, data: { status: 'DEFERRED' } });
      const illegal = await prisma.labSession
        .update({ where: { id: session.id }, data: { status: 'STUCK' } })
        .catch((e) => e);
      assert.equal(illegal.cause.code, 'FL001');
      assert.match(illegal.message, /illegal status transition DEFERRED -> STUCK/);
    });

    test('raw queries: P2010 with the SQLSTATE in meta.driverAdapterError.cause', async () => {
      const err = await prisma.$queryRaw`
        SELECT create_lab_session(${session.userId}::uuid, ${session.labId}::uuid,
                                  ${'ftp://example.com/repo'}, NULL, ${'k1'})`.catch((e) => e);
      assert.ok(err instanceof Prisma.PrismaClientKnownRequestError);
      assert.equal(err.code, 'P2010');
      assert.equal(err.meta.driverAdapterError.cause.originalCode, '22023');
      assert.equal(err.meta.driverAdapterError.cause.originalMessage,
        "create_lab_session: p_fork_url must be a GitHub repository URL (https/ssh/git@ form) (got 'ftp://example.com/repo')");
      assert.match(err.message, /Raw query failed\. Code: `22023`\. Message: `create_lab_session: p_fork_url/);
      assert.equal(sqlState(err), '22023');

      const user = await createUser(prisma);
      const lab = await createLab(prisma);
      const fresh = await prisma.labSession.create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } });
      const pass = await prisma.$executeRaw`
        UPDATE "LabSession" SET status = 'VERIFIED_PASS' WHERE id = ${fresh.id}::uuid`.catch((e) => e);
      assert.equal(pass.code, 'P2010');
      assert.equal(sqlState(pass), 'FL002');
    });

    test('unique violations: P2002 with the constraint, also on a partial unique index', async () => {
      const user = await createUser(prisma);
      const dup = await prisma.user.create({ data: { email: user.email } }).catch((e) => e);
      assert.ok(dup instanceof Prisma.PrismaClientKnownRequestError);
      assert.equal(dup.code, 'P2002');
      assert.equal(dup.meta.modelName, 'User');
      assert.deepEqual(dup.meta.driverAdapterError.cause.constraint, { fields: ['email'] });
      assert.equal(dup.meta.driverAdapterError.cause.originalCode, '23505');
      assert.match(dup.meta.driverAdapterError.cause.originalMessage, /"User_email_key"/);
      assert.match(dup.message, /Unique constraint failed on the fields: \(`email`\)/);

      const lab = await createLab(prisma);
      await prisma.labSession.create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } });
      const second = await prisma.labSession
        .create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } })
        .catch((e) => e);
      assert.equal(second.code, 'P2002');
      assert.deepEqual(second.meta.driverAdapterError.cause.constraint, { fields: ['"userId"', '"labId"'] });
      assert.match(second.meta.driverAdapterError.cause.originalMessage, /"LabSession_userId_labId_active_key"/);

      const raw = await prisma.$executeRaw`
        INSERT INTO "User" (id, email, "updatedAt") VALUES (${crypto.randomUUID()}::uuid, ${user.email}, now())`
        .catch((e) => e);
      assert.equal(raw.code, 'P2010', 'a raw query reports P2010 even for a unique violation');
      assert.equal(sqlState(raw), '23505');
    });

    test('foreign key violations: P2003 (model API)', async () => {
      const err = await prisma.account.create({
        data: { userId: crypto.randomUUID(), type: 'oauth', provider: 'github', providerAccountId: crypto.randomUUID() },
      }).catch((e) => e);
      assert.equal(err.code, 'P2003');
      assert.equal(sqlState(err), '23503');
    });
  });
}
