// A faithful, minimal equivalent of the application code that writes to the
// database, so the suite can run it with the app's current Prisma client:
//   transitionLabSession   ../shared/upstream/app/lab-session-lifecycle.ts
//   POST (push webhook)    ../shared/upstream/app/webhooks-github-route.ts
//   AuditService.log       not in upstream; it inserts actorId, action,
//                          metadata and userId through prisma.auditLog.create
// The transition table and the webhook's actor id are read from the upstream
// files at run time, so a change there is picked up here.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UPSTREAM_APP_DIR } from './paths.mjs';

const lifecycleSource = () => fs.readFileSync(path.join(UPSTREAM_APP_DIR, 'lab-session-lifecycle.ts'), 'utf8');
const webhookSource = () => fs.readFileSync(path.join(UPSTREAM_APP_DIR, 'webhooks-github-route.ts'), 'utf8');

// LAB_SESSION_TRANSITIONS of the app: status -> statuses it may move to.
export function appTransitionTable() {
  const src = lifecycleSource();
  const start = src.indexOf('LAB_SESSION_TRANSITIONS');
  const block = src.slice(start, src.indexOf('};', start));
  const table = {};
  for (const [, from, targets] of block.matchAll(/\[LabStatus\.(\w+)\]:\s*\[([^\]]*)\]/g)) {
    table[from] = [...targets.matchAll(/LabStatus\.(\w+)/g)].map((m) => m[1]);
  }
  if (Object.keys(table).length === 0) throw new Error('LAB_SESSION_TRANSITIONS not found in upstream');
  return table;
}

// The webhook's system actor id ('github-webhook' today).
export function webhookActorId() {
  const block = webhookSource().match(/SYSTEM_ACTOR\s*=\s*\{([^}]*)\}/);
  const id = block && block[1].match(/id:\s*"([^"]+)"/);
  if (!id) throw new Error('SYSTEM_ACTOR id not found in upstream webhook route');
  return id[1];
}

// The app's audit vocabulary (its audit-actions module is not in upstream;
// the values are the member names).
export const AuditAction = { LAB_STATUS_TRANSITION: 'LAB_STATUS_TRANSITION', LAB_VERIFY_ATTEMPT: 'LAB_VERIFY_ATTEMPT' };
export const AuditActorType = { USER: 'USER', SYSTEM: 'SYSTEM' };
export const AuditResourceType = { LAB: 'LAB' };

export function makeApp(db, { webhookSecret = '', logError = () => {} } = {}) {
  const transitions = appTransitionTable();
  const SYSTEM_ACTOR = { type: AuditActorType.SYSTEM, id: webhookActorId() };

  const AuditService = {
    async log(actor, action, resource, metadata) {
      return db.auditLog.create({
        data: {
          actorId: actor.id,
          userId: actor.type === AuditActorType.USER ? actor.id : null,
          action,
          metadata: { actorType: actor.type, resource, ...metadata },
        },
      });
    },
  };

  async function transitionLabSession({ sessionId, to, from, data, actor, reason }) {
    if (data && 'status' in data) throw new Error('status must be set through `to`');
    await db.$transaction(async (tx) => {
      const session = await tx.labSession.findUnique({
        where: { id: sessionId },
        select: { id: true, status: true, labId: true, userId: true },
      });
      if (!session) throw new Error('session not found');
      const current = session.status;
      if (from && !from.includes(current)) throw new Error(`expected one of ${from}, found ${current}`);
      if (!(transitions[current] ?? []).includes(to)) throw new Error(`${current} -> ${to} not allowed by the app`);
      const result = await tx.labSession.updateMany({
        where: { id: sessionId, status: current },
        data: { ...(data ?? {}), ...(to !== current ? { status: to } : {}) },
      });
      if (result.count !== 1) throw new Error('concurrent update');
      await tx.auditLog.create({
        data: {
          actorId: actor.id,
          userId: session.userId,
          action: AuditAction.LAB_STATUS_TRANSITION,
          metadata: {
            actorType: actor.type,
            resource: { type: AuditResourceType.LAB, id: session.labId },
            labId: session.labId,
            labSessionId: session.id,
            fromStatus: current,
            toStatus: to,
            statusChanged: to !== current,
            reason,
          },
        },
      });
    });
  }

  // The push webhook route: event filter, HMAC check of the raw body, the
  // active session by fork URL, an audit row (its failure is logged and
  // swallowed), then IN_PROGRESS -> IN_PROGRESS with lastActivityAt. Any
  // other failure answers 200 "Processing failed" (GitHub does not retry).
  async function POST(req) {
    if (req.headers.get('x-github-event') !== 'push') return new Response('Event ignored', { status: 200 });
    const buf = Buffer.from(await req.arrayBuffer());
    const signature = req.headers.get('x-hub-signature-256') || '';
    if (!signature.startsWith('sha256=')) return new Response('Invalid signature header', { status: 401 });
    if (!webhookSecret) {
      logError('[GITHUB_WEBHOOK_FAILED] missing secret');
      return new Response('Invalid signature', { status: 401 });
    }
    try {
      const expected = Buffer.from(crypto.createHmac('sha256', webhookSecret).update(buf).digest('hex'), 'hex');
      const received = Buffer.from(signature.slice('sha256='.length), 'hex');
      if (expected.length !== received.length || !crypto.timingSafeEqual(expected, received)) {
        return new Response('Invalid signature', { status: 401 });
      }
      const payload = JSON.parse(buf.toString('utf8'));
      const repositoryUrl = payload.repository?.html_url;
      const commitSha = payload.after ?? '';
      if (!repositoryUrl) return new Response('Missing repository URL', { status: 200 });
      const session = await db.labSession.findFirst({
        where: { userForkUrl: repositoryUrl, status: { in: ['IN_PROGRESS', 'STUCK'] } },
      });
      if (!session) return new Response('No matching session', { status: 200 });
      try {
        await AuditService.log(SYSTEM_ACTOR, AuditAction.LAB_VERIFY_ATTEMPT,
          { type: AuditResourceType.LAB, id: session.labId }, { labId: session.labId, commitSha });
      } catch (auditErr) {
        logError('[AUDIT_LOG_WRITE_FAILED]', auditErr);
      }
      await transitionLabSession({
        sessionId: session.id,
        from: ['IN_PROGRESS', 'STUCK'],
        to: 'IN_PROGRESS',
        data: { lastActivityAt: new Date() },
        actor: SYSTEM_ACTOR,
        reason: 'github_webhook_push',
      });
      return new Response('Success', { status: 200 });
    } catch (error) {
      logError('[GITHUB_WEBHOOK_FAILED]', error);
      return new Response('Processing failed', { status: 200 });
    }
  }

  return { AuditService, transitionLabSession, POST, SYSTEM_ACTOR, transitions };
}
