// The application's CURRENT Prisma 7.3 client (generated from the upstream
// schema.prisma, url line removed), connected as a LOGIN member of forgea_app
// to a production database migrated by the pack, does everything the app does
// today; what the pack refuses on purpose reaches it with the documented
// SQLSTATE; and it reads every row the pack itself writes.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { makeApp, webhookActorId } from '../lib/app.mjs';
import { appClient, disconnectAll, packClient, pgClient, roleDsn } from '../lib/clients.mjs';
import {
  createLab, createUser, forkOf, pushPayload, recordPush, sha1, signedPushRequest, sleep, sqlState, uid,
} from '../lib/fixtures.mjs';
import { verifySession } from '../lib/jobs.mjs';

const SECRET = `whsec-${uid()}`;
let prisma;
let app;
let owner;
let worker;
const loggedErrors = [];

before(async () => {
  prisma = appClient('app');
  app = makeApp(prisma, { webhookSecret: SECRET, logError: (...args) => loggedErrors.push(args) });
  owner = await pgClient(roleDsn('owner'));
  worker = packClient('worker');
});
beforeEach(() => {
  loggedErrors.length = 0;
});
after(async () => {
  await disconnectAll();
  await owner?.end();
});

const userActor = (user) => ({ id: user.id, type: 'USER' });

async function newSession(fork = forkOf()) {
  const user = await createUser(prisma);
  const lab = await createLab(prisma);
  const session = await prisma.labSession.create({
    data: { userId: user.id, labId: lab.id, userForkUrl: fork.htmlUrl },
  });
  return { user, lab, session, fork };
}

async function sessionRow(id) {
  const { rows } = await owner.query('SELECT * FROM "LabSession" WHERE id = $1', [id]);
  return rows[0];
}

async function auditRows(filter) {
  const { rows } = await owner.query(
    'SELECT "actorId", action, metadata, "userId" FROM "AuditLog" WHERE metadata->>\'labSessionId\' = $1 OR metadata->>\'labId\' = $2 ORDER BY "createdAt", id',
    [filter.sessionId ?? '', filter.labId ?? ''],
  );
  return rows;
}

// A session with a PASS VerificationAttempt that the pack left DEFERRED (a
// PASSED job does not move a DEFERRED session), as the app finds it.
async function deferredSessionWithPass() {
  const s = await newSession();
  const payload = pushPayload(s.fork);
  await recordPush(prisma, `d-${uid()}`, payload);
  await app.transitionLabSession({ sessionId: s.session.id, to: 'DEFERRED', actor: userActor(s.user) });
  await verifySession(worker, s.session.id, 'PASSED');
  assert.equal((await sessionRow(s.session.id)).status, 'DEFERRED');
  return s;
}

describe('what the app writes today', () => {
  test('create a User and a Lab, edit the Lab, start a LabSession without labVersionId', async () => {
    const user = await createUser(prisma, { githubId: `gh-${uid()}` });
    const lab = await createLab(prisma);
    const edited = await prisma.lab.update({
      where: { id: lab.id },
      data: { title: `${lab.title} (revised)`, constraints: { stack: 'react', language: 'typescript', maxMinutes: 90 } },
    });
    assert.match(edited.title, /revised/);
    await prisma.user.update({ where: { id: user.id }, data: { icprScore: { increment: 5 }, role: 'RECRUITER' } });

    const fork = forkOf();
    const session = await prisma.labSession.create({
      data: { userId: user.id, labId: lab.id, userForkUrl: fork.htmlUrl },
      include: { lab: true, user: true },
    });
    assert.equal(session.status, 'IN_PROGRESS');
    assert.equal(session.lab.title, edited.title);
    assert.equal(session.user.icprScore, 5);

    // The pack filled what the old client does not know: the lab's latest
    // version (2, after the edit) and, at commit, the repository binding.
    const row = await sessionRow(session.id);
    const { rows: [version] } = await owner.query(
      'SELECT "versionNumber", snapshot FROM "LabVersion" WHERE id = $1 AND "labId" = $2', [row.labVersionId, lab.id]);
    assert.equal(version.versionNumber, 2);
    assert.equal(version.snapshot.title, edited.title);
    assert.equal(row.completedAt, null);
    const { rows: [mapping] } = await owner.query(
      'SELECT "repoUrl", "sessionActive" FROM "GitHubRepoMapping" WHERE "sessionId" = $1', [session.id]);
    assert.equal(mapping.repoUrl, fork.htmlUrl.toLowerCase());
    assert.equal(mapping.sessionActive, true);
  });

  test('every transition transitionLabSession makes, except to VERIFIED_PASS by hand', async () => {
    const reachable = { IN_PROGRESS: [], STUCK: ['STUCK'], DEFERRED: ['DEFERRED'] };
    let count = 0;
    for (const [from, targets] of Object.entries(app.transitions)) {
      if (!(from in reachable)) continue;
      for (const to of targets.filter((t) => t !== 'VERIFIED_PASS')) {
        const { user, session } = await newSession();
        for (const step of reachable[from]) {
          await app.transitionLabSession({ sessionId: session.id, to: step, actor: userActor(user) });
        }
        const beforeRow = await sessionRow(session.id);
        await sleep(5);
        await app.transitionLabSession({
          sessionId: session.id, from: [from], to, actor: userActor(user), reason: 'suite',
          data: to === from ? { lastActivityAt: new Date() } : undefined,
        });
        const row = await sessionRow(session.id);
        assert.equal(row.status, to, `${from} -> ${to}`);
        assert.equal(row.completedAt, null);
        if (to === from) assert.ok(row.lastActivityAt > beforeRow.lastActivityAt, `${from} -> ${to} bumps lastActivityAt`);
        const audit = (await auditRows({ sessionId: session.id })).at(-1);
        assert.equal(audit.action, 'LAB_STATUS_TRANSITION');
        assert.deepEqual([audit.metadata.fromStatus, audit.metadata.toStatus, audit.metadata.statusChanged], [from, to, from !== to]);
        count += 1;
      }
    }
    assert.equal(count, 8, 'IN_PROGRESS x3, STUCK x3, DEFERRED x2');
  });

  test('IN_PROGRESS and STUCK -> VERIFIED_PASS once a PASS attempt exists, then VERIFIED_PASS -> VERIFIED_PASS', async () => {
    for (const via of ['IN_PROGRESS', 'STUCK']) {
      const { user, session } = await deferredSessionWithPass();
      await app.transitionLabSession({ sessionId: session.id, from: ['DEFERRED'], to: 'IN_PROGRESS', actor: userActor(user) });
      if (via === 'STUCK') await app.transitionLabSession({ sessionId: session.id, to: 'STUCK', actor: userActor(user) });
      await app.transitionLabSession({ sessionId: session.id, from: [via], to: 'VERIFIED_PASS', actor: userActor(user) });
      const passed = await sessionRow(session.id);
      assert.equal(passed.status, 'VERIFIED_PASS');
      assert.ok(passed.completedAt instanceof Date);
      await sleep(5);
      await app.transitionLabSession({
        sessionId: session.id, to: 'VERIFIED_PASS', actor: userActor(user), data: { lastActivityAt: new Date() },
      });
      const again = await sessionRow(session.id);
      assert.ok(again.lastActivityAt > passed.lastActivityAt);
      assert.deepEqual(again.completedAt, passed.completedAt);
    }
  });

  test('reads with relations', async () => {
    const { user, lab, session } = await newSession();
    await prisma.resumeBullet.create({
      data: { sessionId: session.id, bulletText: 'Fixed a stale closure', atsKeywords: ['React', 'hooks'] },
    });
    await app.AuditService.log(userActor(user), 'LAB_STARTED', { type: 'LAB', id: lab.id }, { labId: lab.id });
    const found = await prisma.user.findUnique({
      where: { id: user.id },
      include: {
        labSessions: { include: { lab: true, verificationLog: true, resumeBullet: true } },
        auditLogs: true, accounts: true, sessions: true, authIdentities: true, authSessions: true,
      },
    });
    assert.equal(found.labSessions.length, 1);
    assert.equal(found.labSessions[0].lab.id, lab.id);
    assert.equal(found.labSessions[0].verificationLog, null);
    assert.deepEqual(found.labSessions[0].resumeBullet.atsKeywords, ['React', 'hooks']);
    assert.equal(found.auditLogs.length, 1);
    const labs = await prisma.lab.findMany({ where: { id: lab.id }, include: { sessions: { include: { user: true } } } });
    assert.equal(labs[0].sessions[0].user.email, user.email);
    const active = await prisma.labSession.findMany({
      where: { userId: user.id, status: { in: ['IN_PROGRESS', 'STUCK'] } }, orderBy: { startedAt: 'desc' },
    });
    assert.equal(active.length, 1);
  });

  test('AuditService.log as the app writes it, including the webhook actor', async () => {
    const { user, lab } = await newSession();
    const system = { id: 'seed', type: 'SYSTEM' };
    const webhook = { id: webhookActorId(), type: 'SYSTEM' };
    assert.equal(webhook.id, 'github-webhook');
    const rows = [];
    rows.push(await app.AuditService.log(userActor(user), 'LAB_STARTED', { type: 'LAB', id: lab.id }, { labId: lab.id }));
    rows.push(await app.AuditService.log(system, 'LAB_STATUS_TRANSITION', { type: 'LAB', id: lab.id }, { labId: lab.id, reason: 'seed_data' }));
    rows.push(await app.AuditService.log(webhook, 'LAB_VERIFY_ATTEMPT', { type: 'LAB', id: lab.id }, { labId: lab.id, commitSha: sha1() }));
    assert.deepEqual(rows.map((r) => r.actorId), [user.id, 'seed', 'github-webhook']);
    assert.deepEqual(rows.map((r) => r.userId), [user.id, null, null]);
    assert.equal(rows[2].metadata.actorType, 'SYSTEM');
    // The push ledger's anchors stay reserved to record_push().
    await assert.rejects(
      app.AuditService.log(webhook, 'PUSH_RECORDED', { type: 'LAB', id: lab.id }, { anchors: [] }),
      (err) => sqlState(err) === '42501' && /record_push/.test(err.message),
    );
  });

  test('ResumeBullet: written once, never rewritten', async () => {
    const { session } = await newSession();
    const bullet = await prisma.resumeBullet.create({
      data: { sessionId: session.id, bulletText: 'Removed a render loop', atsKeywords: ['React'] },
      include: { session: true },
    });
    assert.equal(bullet.session.id, session.id);
    await assert.rejects(
      prisma.resumeBullet.update({ where: { id: bullet.id }, data: { bulletText: 'edited' } }),
      // forgea_app holds no UPDATE on the table: the GRANT model answers first.
      (err) => sqlState(err) === '42501' && /ResumeBullet/.test(err.message),
    );
  });

  test('the NextAuth tables: Account, Session, VerificationToken, AuthIdentity, AuthSession', async () => {
    const user = await createUser(prisma);
    const providerAccountId = `${Date.now()}${uid()}`;
    const account = await prisma.account.create({
      data: {
        userId: user.id, type: 'oauth', provider: 'github', providerAccountId,
        access_token: 'gho_example', token_type: 'bearer', scope: 'read:user,user:email', expires_at: 1_900_000_000,
      },
    });
    await prisma.account.update({ where: { id: account.id }, data: { access_token: 'gho_rotated' } });
    const byProvider = await prisma.account.findUnique({
      where: { provider_providerAccountId: { provider: 'github', providerAccountId } }, include: { user: true },
    });
    assert.equal(byProvider.user.id, user.id);

    const sessionToken = `st-${uid()}`;
    await prisma.session.create({ data: { sessionToken, userId: user.id, expires: new Date(Date.now() + 86_400_000) } });
    await prisma.session.update({ where: { sessionToken }, data: { expires: new Date(Date.now() + 2 * 86_400_000) } });
    const withUser = await prisma.session.findUnique({ where: { sessionToken }, include: { user: true } });
    assert.equal(withUser.user.email, user.email);
    await prisma.session.delete({ where: { sessionToken } });

    const token = `vt-${uid()}`;
    await prisma.verificationToken.create({ data: { identifier: user.email, token, expires: new Date(Date.now() + 3_600_000) } });
    const used = await prisma.verificationToken.delete({ where: { identifier_token: { identifier: user.email, token } } });
    assert.equal(used.token, token);

    await prisma.authIdentity.create({ data: { userId: user.id, provider: 'GITHUB', providerUserId: providerAccountId } });
    const authToken = `ast-${uid()}`;
    await prisma.authSession.create({ data: { sessionToken: authToken, userId: user.id, expires: new Date(Date.now() + 86_400_000) } });
    await prisma.authSession.update({ where: { sessionToken: authToken }, data: { expires: new Date(Date.now() + 60_000) } });
    const full = await prisma.user.findUnique({
      where: { id: user.id }, include: { accounts: true, authIdentities: true, authSessions: true, sessions: true },
    });
    assert.equal(full.accounts[0].access_token, 'gho_rotated');
    assert.equal(full.authIdentities[0].provider, 'GITHUB');
    assert.equal(full.authSessions.length, 1);
    assert.equal(full.sessions.length, 0);
    await prisma.authSession.deleteMany({ where: { userId: user.id } });
    await prisma.authIdentity.deleteMany({ where: { userId: user.id } });
    await prisma.account.delete({ where: { id: account.id } });
  });
});

describe('the GitHub push webhook route, whole flow', () => {
  test('a signed push answers 200 "Success", audits the attempt and bumps lastActivityAt', async () => {
    for (const start of ['IN_PROGRESS', 'STUCK']) {
      const { user, session, fork } = await newSession();
      if (start === 'STUCK') await app.transitionLabSession({ sessionId: session.id, to: 'STUCK', actor: userActor(user) });
      const beforeRow = await sessionRow(session.id);
      await sleep(5);
      const payload = pushPayload(fork);
      const res = await app.POST(signedPushRequest(payload, SECRET));
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'Success', JSON.stringify(loggedErrors.map((e) => String(e[1]))));
      assert.deepEqual(loggedErrors, [], 'the route logged an error');
      const row = await sessionRow(session.id);
      assert.equal(row.status, 'IN_PROGRESS');
      assert.ok(row.lastActivityAt > beforeRow.lastActivityAt, 'lastActivityAt bumped');
      const audit = await auditRows({ sessionId: session.id, labId: session.labId });
      const attempt = audit.find((a) => a.action === 'LAB_VERIFY_ATTEMPT');
      assert.equal(attempt.actorId, 'github-webhook');
      assert.equal(attempt.metadata.commitSha, payload.after);
      const moved = audit.filter((a) => a.action === 'LAB_STATUS_TRANSITION' && a.metadata.reason === 'github_webhook_push');
      assert.equal(moved.length, 1);
      assert.deepEqual([moved[0].metadata.fromStatus, moved[0].metadata.toStatus], [start, 'IN_PROGRESS']);
      assert.equal(moved[0].actorId, 'github-webhook');
    }
  });

  test('the route refuses a bad signature, ignores other events and unknown repositories', async () => {
    const { fork } = await newSession();
    const payload = pushPayload(fork);
    const forged = await app.POST(signedPushRequest(payload, 'not-the-secret'));
    assert.equal(forged.status, 401);
    const ping = await app.POST(signedPushRequest({ zen: 'Keep it logically awesome.' }, SECRET, { event: 'ping' }));
    assert.equal(await ping.text(), 'Event ignored');
    const stranger = await app.POST(signedPushRequest(pushPayload(forkOf()), SECRET));
    assert.equal(await stranger.text(), 'No matching session');
    assert.deepEqual(loggedErrors, []);
  });
});

describe('what the pack refuses on purpose reaches the app with its SQLSTATE', () => {
  test('VERIFIED_PASS by hand: FL002, the session and the audit trail unchanged', async () => {
    const { user, session } = await newSession();
    await assert.rejects(
      prisma.labSession.update({ where: { id: session.id }, data: { status: 'VERIFIED_PASS' } }),
      (err) => err.name === 'DriverAdapterError' && sqlState(err) === 'FL002'
        && err.message.includes(session.id) && /no PASS VerificationAttempt/.test(err.message),
    );
    for (const from of ['IN_PROGRESS', 'STUCK']) {
      if (from === 'STUCK') await app.transitionLabSession({ sessionId: session.id, to: 'STUCK', actor: userActor(user) });
      const auditBefore = (await auditRows({ sessionId: session.id })).length;
      await assert.rejects(
        app.transitionLabSession({ sessionId: session.id, from: [from], to: 'VERIFIED_PASS', actor: userActor(user) }),
        (err) => sqlState(err) === 'FL002' && /VERIFIED_PASS refused/.test(err.message),
      );
      assert.equal((await sessionRow(session.id)).status, from);
      assert.equal((await auditRows({ sessionId: session.id })).length, auditBefore, 'the transaction rolled back');
    }
  });

  test('a write to the frozen VerificationLog: FA001 naming the table and why', async () => {
    const { session } = await newSession();
    await assert.rejects(
      prisma.verificationLog.create({
        data: { sessionId: session.id, commitSha: sha1(), prDiff: 'diff --git a/x b/x', ciOutput: '{"ok":true}' },
      }),
      (err) => sqlState(err) === 'FA001' && /VerificationLog is frozen/.test(err.message)
        && /VerificationAttempt/.test(err.message),
    );
  });
});

describe('the current client reads every row the pack writes', () => {
  test('sessions from create_lab_session, pushes, verification and the audit rows of record_push', async () => {
    const user = await createUser(prisma);
    const lab = await createLab(prisma);
    const fork = forkOf();
    const [{ id }] = await prisma.$queryRaw`
      SELECT create_lab_session(${user.id}::uuid, ${lab.id}::uuid, ${fork.htmlUrl}, ${BigInt(fork.id)}::bigint, ${`key-${uid()}`}) AS id`;
    const payload = pushPayload(fork, { commits: 3 });
    const delivery = `d-${uid()}`;
    const recorded = await recordPush(prisma, delivery, payload);
    assert.deepEqual(recorded.map((r) => r.outcome), ['recorded', 'recorded', 'recorded']);
    const again = await recordPush(prisma, delivery, payload);
    assert.deepEqual(again.map((r) => r.outcome), ['duplicate', 'duplicate', 'duplicate']);
    const nowhere = await recordPush(prisma, `d-${uid()}`, pushPayload(forkOf()));
    assert.deepEqual(nowhere.map((r) => r.outcome), ['rejected', 'rejected']);
    await verifySession(worker, id, 'PASSED');

    const session = await prisma.labSession.findUnique({
      where: { id }, include: { lab: true, user: { include: { auditLogs: true } }, verificationLog: true, resumeBullet: true },
    });
    assert.equal(session.status, 'VERIFIED_PASS');
    assert.equal(session.userForkUrl, fork.htmlUrl);
    const actions = session.user.auditLogs.map((a) => a.action).sort();
    assert.deepEqual(actions, ['PUSH_DUPLICATE_DELIVERY', 'PUSH_RECORDED']);

    // Every row of every table the current client knows, including the
    // production rows the migration backfilled and the pack's own.
    for (const model of ['user', 'account', 'session', 'verificationToken', 'authIdentity', 'authSession',
      'lab', 'labSession', 'verificationLog', 'resumeBullet', 'auditLog']) {
      const rows = await prisma[model].findMany();
      assert.ok(Array.isArray(rows), model);
    }
    const all = await prisma.labSession.findMany({ include: { lab: true, user: true, verificationLog: true, resumeBullet: true } });
    assert.ok(all.some((s) => s.id === id));
    const audits = await prisma.auditLog.findMany({ where: { actorId: 'github-webhook' }, include: { user: true } });
    assert.ok(audits.some((a) => a.action === 'PUSH_REJECTED' && a.metadata.sqlstate === 'FL003'));
  });
});
