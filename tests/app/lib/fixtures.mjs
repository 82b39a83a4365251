// Test data: unique names per run, the rows the app creates, and GitHub push
// payloads shaped as GitHub sends them.
import crypto from 'node:crypto';

export const uid = () => crypto.randomBytes(6).toString('hex');
export const sha1 = () => crypto.randomBytes(20).toString('hex');
export const repoId = () => 100_000_000 + crypto.randomInt(1, 2_000_000_000);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// User and Lab as the app creates them (app/seed.ts does the same calls).
export async function createUser(prisma, extra = {}) {
  return prisma.user.create({ data: { email: `dev-${uid()}@forgea.test`, ...extra } });
}

export async function createLab(prisma) {
  const id = uid();
  return prisma.lab.create({
    data: {
      title: `Stale closure ${id}`,
      epic: 'React State Bugs',
      failureClass: 'STATE_CORRUPTION',
      sourceGithubIssueUrl: `https://github.com/forgea-labs/lab-${id}/issues/1`,
      repoVersion: 'v1',
      baseRepoUrl: `https://github.com/forgea-labs/lab-${id}`,
      constraints: { stack: 'react', language: 'typescript' },
    },
  });
}

export function forkOf(login = `Dev-${uid()}`, name = `Lab-Fork-${uid()}`) {
  return { login, name, htmlUrl: `https://github.com/${login}/${name}`, id: repoId() };
}

// A push event body as GitHub delivers it (the fields record_push and the
// app's webhook read, plus the usual others).
export function pushPayload(fork, { branch = 'main', commits = 2, before = sha1(), noUsernameOnFirst = true } = {}) {
  const when = new Date();
  const list = [];
  for (let i = 0; i < commits; i += 1) {
    const id = sha1();
    const ts = new Date(when.getTime() - (commits - i) * 60_000);
    list.push({
      id,
      tree_id: sha1(),
      distinct: true,
      message: `fix: stale closure step ${i + 1}`,
      timestamp: ts.toISOString().replace(/\.\d{3}Z$/, '+00:00'),
      url: `${fork.htmlUrl}/commit/${id}`,
      author: i === 0 && noUsernameOnFirst
        ? { name: 'Local Author', email: 'local@example.invalid' }
        : { name: 'Dev Person', email: `${fork.login.toLowerCase()}@users.noreply.github.com`, username: fork.login },
      committer: { name: 'GitHub', email: 'noreply@github.com', username: 'web-flow' },
      added: i === 0 ? ['src/hooks/useCounter.test.ts'] : [],
      removed: [],
      modified: ['src/hooks/useCounter.ts', 'src/App.tsx'],
    });
  }
  const head = list[list.length - 1];
  const pushedAt = Math.floor(when.getTime() / 1000);
  return {
    ref: `refs/heads/${branch}`,
    before,
    after: head.id,
    repository: {
      id: fork.id,
      node_id: `R_${uid()}`,
      name: fork.name,
      full_name: `${fork.login}/${fork.name}`,
      private: false,
      owner: { name: fork.login, login: fork.login, type: 'User' },
      html_url: fork.htmlUrl,
      url: fork.htmlUrl,
      fork: true,
      created_at: pushedAt - 86_400,
      updated_at: when.toISOString(),
      pushed_at: pushedAt,
      default_branch: 'main',
      master_branch: 'main',
    },
    pusher: { name: fork.login, email: `${fork.login.toLowerCase()}@users.noreply.github.com` },
    sender: { login: fork.login, id: 4242, type: 'User' },
    created: false,
    deleted: false,
    forced: false,
    base_ref: null,
    compare: `${fork.htmlUrl}/compare/${before.slice(0, 12)}...${head.id.slice(0, 12)}`,
    commits: list,
    head_commit: head,
  };
}

// record_push(p_delivery_id, p_provider_repo_id, p_repo_url, p_ref, p_head_sha,
// p_pushed_at, p_commits) called the way a webhook on the new client would.
export function recordPush(prisma, deliveryId, payload) {
  return prisma.$queryRaw`
    SELECT * FROM record_push(
      ${deliveryId}, ${BigInt(payload.repository.id)}::bigint, ${payload.repository.html_url},
      ${payload.ref}, ${payload.after},
      ${new Date(payload.repository.pushed_at * 1000).toISOString()}::timestamptz,
      ${JSON.stringify(payload.commits)}::jsonb)`;
}

export function signedPushRequest(payload, secret, { event = 'push', signature } = {}) {
  const body = JSON.stringify(payload);
  const sig = signature ?? `sha256=${crypto.createHmac('sha256', secret).update(body).digest('hex')}`;
  return new Request('https://forgea.test/api/webhooks/github', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': crypto.randomUUID(),
      'x-hub-signature-256': sig,
      'user-agent': 'GitHub-Hookshot/abc1234',
    },
    body,
  });
}

// The SQLSTATE of any error the Prisma 7 client throws, whichever shape it has:
// a DriverAdapterError (model API, `cause.code`), P2010 for raw queries and
// P2002/P2003 for constraint violations (`meta.driverAdapterError.cause.originalCode`).
// (The README shows this helper.)
export const sqlState = (err) => err?.cause?.originalCode ?? err?.meta?.driverAdapterError?.cause?.originalCode;
