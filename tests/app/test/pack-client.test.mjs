// The NEW client, generated from prisma/schema.prisma, as forgea_app,
// forgea_worker and forgea_readonly: every new model with its relations, the
// SQL API through $queryRaw, and the workarounds the README lists.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { appClient, disconnectAll, packClient, pgClient, roleDsn } from '../lib/clients.mjs';
import { createLab, createUser, forkOf, pushPayload, recordPush, sqlState, uid } from '../lib/fixtures.mjs';
import { claim, complete, WORKER_ID } from '../lib/jobs.mjs';

let app;
let worker;
let readonly;
const flow = {};

before(async () => {
  app = packClient('app');
  worker = packClient('worker');
  readonly = packClient('readonly');
});
after(disconnectAll);

const ZERO_HASH = new Uint8Array(32);

describe('as forgea_app: start a session, record a push', () => {
  test('create_lab_session binds the repository in the same transaction and is idempotent', async () => {
    const user = await createUser(app);
    const lab = await createLab(app);
    const fork = forkOf();
    const key = `start-${uid()}`;
    const call = () => app.$queryRaw`
      SELECT create_lab_session(${user.id}::uuid, ${lab.id}::uuid, ${fork.htmlUrl},
                                ${BigInt(fork.id)}::bigint, ${key}) AS id`;
    const [{ id }] = await call();
    const [{ id: again }] = await call();
    assert.equal(again, id);
    const session = await app.labSession.findUnique({
      where: { id }, include: { labVersion: true, repoMapping: true, lab: { include: { versions: true } }, user: true },
    });
    assert.equal(session.status, 'IN_PROGRESS');
    assert.equal(session.completedAt, null);
    assert.equal(session.labVersion.labId, lab.id);
    assert.equal(session.labVersion.versionNumber, 1);
    assert.deepEqual(session.lab.versions.map((v) => v.id), [session.labVersionId]);
    assert.equal(session.repoMapping.providerRepoId, BigInt(fork.id));
    assert.equal(session.repoMapping.repoUrl, fork.htmlUrl.toLowerCase());
    assert.equal(session.repoMapping.repoFullName, `${fork.login}/${fork.name}`.toLowerCase());
    assert.equal(session.repoMapping.idempotencyKey, key);
    assert.ok(session.repoMapping.requestDigest instanceof Uint8Array);
    // timezone('UTC', now()) defaults come back as the right instant
    assert.ok(Math.abs(session.repoMapping.createdAt.getTime() - Date.now()) < 120_000);
    Object.assign(flow, { user, lab, fork, sessionId: id });
  });

  test('record_push with a GitHub push payload writes the ledger, the delivery and the job', async () => {
    const payload = pushPayload(flow.fork, { commits: 3 });
    const delivery = `72d3162e-${uid()}`;
    const rows = await recordPush(app, delivery, payload);
    assert.deepEqual(rows.map((r) => r.commit_sha), payload.commits.map((c) => c.id));
    assert.deepEqual(rows.map((r) => [r.created, r.outcome]), [[true, 'recorded'], [true, 'recorded'], [true, 'recorded']]);
    assert.deepEqual(rows.map((r) => r.verification_job_id !== null), [false, false, true]);
    const redelivered = await recordPush(app, delivery, payload);
    assert.deepEqual(redelivered.map((r) => r.outcome), ['duplicate', 'duplicate', 'duplicate']);

    const attempts = await app.labAttempt.findMany({
      where: { sessionId: flow.sessionId }, orderBy: { chainSeq: 'asc' },
      include: { session: true, verificationJobs: true },
    });
    assert.deepEqual(attempts.map((a) => a.chainSeq), [1n, 2n, 3n]);
    assert.deepEqual(attempts[0].prevHash, ZERO_HASH);
    assert.deepEqual(attempts[1].prevHash, attempts[0].rowHash);
    assert.equal(attempts[2].rowHash.length, 32);
    const [first, , head] = attempts;
    assert.equal(first.authorLogin, null);
    assert.equal(head.authorLogin, flow.fork.login);
    assert.equal(head.branch, 'main');
    assert.equal(head.deliveryId, delivery);
    assert.deepEqual(first.changedFiles, {
      added: payload.commits[0].added, modified: payload.commits[0].modified, removed: payload.commits[0].removed,
    });
    assert.equal(head.verificationJobs.length, 1);
    assert.equal(head.session.id, flow.sessionId);

    const deliveryRow = await app.gitHubPushDelivery.findUnique({
      where: { deliveryId: delivery }, include: { session: true, verificationJob: { include: { labAttempt: true } } },
    });
    assert.equal(deliveryRow.headSha, payload.after);
    assert.equal(deliveryRow.verificationJob.labAttempt.commitSha, payload.after);

    const job = await app.verificationJob.findFirst({
      where: { sessionId: flow.sessionId },
      include: { labAttempt: true, labVersion: true, session: true, verificationAttempt: true, pushDeliveries: true },
    });
    assert.equal(job.status, 'QUEUED');
    assert.equal(job.commitSha, payload.after);
    assert.equal(job.labVersionId, job.session.labVersionId);
    assert.equal(job.verificationAttempt, null);
    assert.equal(job.pushDeliveries[0].deliveryId, delivery);
    const audits = await app.auditLog.findMany({ where: { userId: flow.user.id }, orderBy: { createdAt: 'asc' } });
    assert.deepEqual(audits.map((a) => a.action), ['PUSH_RECORDED', 'PUSH_DUPLICATE_DELIVERY']);
    assert.equal(audits[0].metadata.attempts.length, 3);
    assert.equal(audits[0].metadata.headSha, payload.after);
    Object.assign(flow, { jobId: job.id, headSha: payload.after });
  });
});

describe('as forgea_worker: claim and complete the job', () => {
  test('claim_verification_job hands out the job with a lease', async () => {
    const job = await claim(worker);
    assert.equal(job.id, flow.jobId);
    assert.equal(job.status, 'RUNNING');
    assert.equal(job.leaseOwner, WORKER_ID);
    assert.equal(job.runCount, 1);
    assert.match(job.leaseToken, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    flow.leaseToken = job.leaseToken;
    assert.equal(await claim(worker), null, 'one RUNNING job per session, nothing else queued');
    const seen = await worker.verificationJob.findUnique({
      where: { id: job.id }, include: { labAttempt: true, labVersion: { include: { lab: true } }, session: true },
    });
    assert.equal(seen.labAttempt.commitSha, flow.headSha);
    assert.equal(seen.labVersion.lab.id, flow.lab.id);
  });

  test('a PASSED completion appends the PASS attempt and makes the session VERIFIED_PASS', async () => {
    const logs = { runner: 'forgea-verify 1.4', checks: [{ name: 'unit', passed: true }], durationMs: 8123 };
    await assert.rejects(complete(worker, flow.jobId, 'PASSED', 0, logs, '00000000-0000-4000-8000-000000000000'),
      (err) => sqlState(err) === 'FQ002', 'a wrong lease token is refused');
    const done = await complete(worker, flow.jobId, 'PASSED', 0, logs, flow.leaseToken);
    assert.equal(done.status, 'PASSED');
    assert.ok(done.completedAt instanceof Date);
    const session = await worker.labSession.findUnique({
      where: { id: flow.sessionId },
      include: { verificationAttempts: { include: { verificationJob: true } }, labVersion: true, repoMapping: true },
    });
    assert.equal(session.status, 'VERIFIED_PASS');
    assert.ok(session.completedAt instanceof Date);
    assert.equal(session.repoMapping.sessionActive, false);
    const [attempt] = session.verificationAttempts;
    assert.equal(attempt.result, 'PASS');
    assert.equal(attempt.commitSha, flow.headSha);
    assert.deepEqual(attempt.logs.checks, logs.checks);
    assert.equal(attempt.verificationJob.id, flow.jobId);
    await assert.rejects(worker.user.findMany(), (err) => sqlState(err) === '42501');
  });
});

describe('as forgea_readonly: every new model with its relations', () => {
  test('reads LabVersion, LabSession, VerificationAttempt, GitHubRepoMapping, LabAttempt, GitHubPushDelivery, VerificationJob', async () => {
    const version = await readonly.labVersion.findFirst({
      where: { labId: flow.lab.id }, include: { lab: true, labSessions: true, verificationJobs: true },
    });
    assert.equal(version.labSessions[0].id, flow.sessionId);
    assert.equal(version.verificationJobs[0].id, flow.jobId);
    const session = await readonly.labSession.findUnique({
      where: { id: flow.sessionId },
      include: {
        user: true, lab: true, labVersion: true, repoMapping: true, verificationLog: true, resumeBullet: true,
        verificationAttempts: true, labAttempts: { orderBy: { chainSeq: 'asc' } }, pushDeliveries: true, verificationJobs: true,
      },
    });
    assert.equal(session.labAttempts.length, 3);
    assert.equal(session.pushDeliveries.length, 1);
    assert.equal(session.verificationAttempts[0].result, 'PASS');
    const attempt = await readonly.verificationAttempt.findFirst({
      where: { sessionId: flow.sessionId }, include: { session: true, verificationJob: { include: { labAttempt: true } } },
    });
    assert.equal(attempt.verificationJob.labAttempt.commitSha, flow.headSha);
    const mapping = await readonly.gitHubRepoMapping.findUnique({ where: { sessionId: flow.sessionId }, include: { session: true } });
    assert.equal(mapping.session.status, 'VERIFIED_PASS');
    const job = await readonly.verificationJob.findUnique({
      where: { id: flow.jobId }, include: { labAttempt: true, verificationAttempt: true, pushDeliveries: true, labVersion: true },
    });
    assert.equal(job.verificationAttempt.id, attempt.id);
  });

  test('reads LedgerCheckpoint, which only the owner writes', async () => {
    const owner = await pgClient(roleDsn('owner'));
    try {
      await owner.query(`INSERT INTO "LedgerCheckpoint" ("root", "sessionCount", "rowCount")
                         VALUES (repeat('ab', 32), 1, 3)`);
    } finally {
      await owner.end();
    }
    const [checkpoint] = await readonly.ledgerCheckpoint.findMany({ orderBy: { takenAt: 'desc' }, take: 1 });
    assert.equal(checkpoint.root, 'ab'.repeat(32));
    assert.equal(checkpoint.rowCount, 3n);
    assert.equal(checkpoint.previousRoot, null);
  });

  test('reads Account without the OAuth tokens, never the tokens themselves', async () => {
    await app.account.create({
      data: { userId: flow.user.id, type: 'oauth', provider: 'github', providerAccountId: uid(), access_token: 'gho_secret' },
    });
    const accounts = await readonly.account.findMany({
      where: { userId: flow.user.id }, select: { id: true, provider: true, providerAccountId: true, expires_at: true },
    });
    assert.equal(accounts.length, 1);
    await assert.rejects(readonly.account.findMany({ where: { userId: flow.user.id } }),
      (err) => sqlState(err) === '42501');
    await assert.rejects(readonly.verificationToken.findMany(), (err) => sqlState(err) === '42501');
  });
});

describe('what the new schema asks of the app', () => {
  test('a LabSession created without labVersionId gets the latest version; its mapping appears at commit', async () => {
    const user = await createUser(app);
    const lab = await createLab(app);
    await app.lab.update({ where: { id: lab.id }, data: { repoVersion: 'v2' } });
    const fork = forkOf();
    const created = await app.labSession.create({
      data: { userId: user.id, labId: lab.id, userForkUrl: fork.htmlUrl },
      include: { labVersion: true, repoMapping: true },
    });
    assert.equal(created.labVersion.versionNumber, 2);
    assert.equal(created.labVersion.repoVersion, 'v2');
    // The deferred trigger binds the repository at COMMIT, after the
    // statement that returned this row: re-read it after the write.
    assert.equal(created.repoMapping, null);
    const reread = await app.labSession.findUnique({ where: { id: created.id }, include: { repoMapping: true } });
    assert.equal(reread.repoMapping.repoUrl, fork.htmlUrl.toLowerCase());
    assert.equal(reread.repoMapping.providerRepoId, null);
  });

  test('BigInt and Bytes fields need a replacer before JSON.stringify', async () => {
    const attempt = await app.labAttempt.findFirst({ where: { sessionId: flow.sessionId } });
    assert.throws(() => JSON.stringify(attempt), /BigInt/);
    const replacer = (_key, value) => {
      if (typeof value === 'bigint') return value.toString();
      if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
      return value;
    };
    const json = JSON.parse(JSON.stringify(attempt, replacer));
    assert.equal(json.chainSeq, '1');
    assert.equal(json.prevHash, '0'.repeat(64));
  });

  test('a second active session of the same user and lab is P2002 on the partial unique index', async () => {
    const user = await createUser(app);
    const lab = await createLab(app);
    await app.labSession.create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } });
    await assert.rejects(
      app.labSession.create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } }),
      (err) => err.code === 'P2002'
        && /LabSession_userId_labId_active_key/.test(err.meta.driverAdapterError.cause.originalMessage),
    );
  });

  test('rollout order: a FAILED session is readable by the new client only', async () => {
    const user = await createUser(app);
    const lab = await createLab(app);
    const session = await app.labSession.create({ data: { userId: user.id, labId: lab.id, userForkUrl: forkOf().htmlUrl } });
    const failed = await app.labSession.update({ where: { id: session.id }, data: { status: 'FAILED' } });
    assert.equal(failed.status, 'FAILED');
    assert.ok(failed.completedAt instanceof Date);
    const current = appClient('app');
    await assert.rejects(current.labSession.findUnique({ where: { id: session.id } }),
      (err) => err.code === 'P2023' && /FAILED/.test(err.message));
  });
});
