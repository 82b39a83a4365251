// The verification worker's side, through the SQL API (as forgea_worker).
export const WORKER_ID = 'worker-prisma-suite';

export async function claim(worker, lease = '5 minutes') {
  const rows = await worker.$queryRaw`
    SELECT * FROM claim_verification_job(${WORKER_ID}, ${lease}::interval)`;
  return rows[0] ?? null;
}

// The lease token claim handed out must be presented: Prisma's pool may run the
// completion on another connection than the claim.
export async function complete(worker, jobId, status, exitCode, logs, leaseToken) {
  const rows = await worker.$queryRaw`
    SELECT * FROM complete_verification_job(
      ${jobId}::uuid, ${WORKER_ID}, ${status}::"VerificationJobStatus", ${exitCode}::integer,
      ${JSON.stringify(logs)}::jsonb, ${leaseToken}::uuid)`;
  return rows[0];
}

// Claims until it holds the job of `sessionId` (jobs left queued by earlier
// tests of the same database are completed as ERROR on the way), then
// completes it with `status`.
export async function verifySession(worker, sessionId, status = 'PASSED', logs = { summary: 'all checks passed' }) {
  for (let i = 0; i < 50; i += 1) {
    const job = await claim(worker);
    if (!job) throw new Error(`no queued job for session ${sessionId}`);
    if (job.sessionId === sessionId) {
      return complete(worker, job.id, status, status === 'PASSED' ? 0 : 1, logs, job.leaseToken);
    }
    await complete(worker, job.id, 'ERROR', null, { reason: 'left over by another test' },
      job.leaseToken);
  }
  throw new Error('too many foreign jobs in the queue');
}
