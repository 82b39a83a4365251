"""The naive migration: what a team would write without the pack, for comparison.

The same schema change as the pack's chain (lab versions, the new LabSession
columns and constraints, verification attempts copied from the legacy log,
repository mappings, the push ledger and job tables), written as plain
statements in one transaction per file, the way ``prisma migrate`` runs its
``migration.sql`` files: ``ALTER TABLE ... ADD COLUMN``, one ``UPDATE``
backfill, ``SET NOT NULL``, foreign keys and unique indexes built in place, the
log conversion as one ``INSERT ... SELECT``. No lock_timeout, no batches, no
``NOT VALID``, no ``CONCURRENTLY``.

``harness bench`` runs it on an identical copy of the data under the same
simulated application and reports ``naive_migration_s`` and
``naive_max_blocking_lock_s`` beside the pack's figures. It is benchmark input,
never applied to a real database.
"""

from __future__ import annotations

import time

NAIVE_FILES: list[tuple[str, str]] = [
    ("01_lab_status_failed", """
ALTER TYPE "LabStatus" ADD VALUE 'FAILED';
"""),
    ("02_lab_version", """
CREATE TABLE "LabVersion" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "labId" UUID NOT NULL,
    "versionNumber" INTEGER NOT NULL,
    "repoVersion" TEXT NOT NULL,
    "baseRepoUrl" TEXT NOT NULL,
    "snapshot" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "LabVersion_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "LabVersion_labId_versionNumber_key"
    ON "LabVersion" ("labId", "versionNumber");
ALTER TABLE "LabVersion" ADD CONSTRAINT "LabVersion_labId_fkey"
    FOREIGN KEY ("labId") REFERENCES "Lab" ("id");
INSERT INTO "LabVersion" ("labId", "versionNumber", "repoVersion", "baseRepoUrl", "snapshot")
SELECT "id", 1, "repoVersion", "baseRepoUrl", to_jsonb(l) FROM "Lab" AS l;
"""),
    ("03_lab_session_columns", """
ALTER TABLE "LabSession" ADD COLUMN "labVersionId" UUID, ADD COLUMN "completedAt" TIMESTAMP(3);
UPDATE "LabSession" AS s
SET "labVersionId" = v."id",
    "completedAt" = CASE WHEN s."status" = 'VERIFIED_PASS' THEN s."lastActivityAt" END
FROM "LabVersion" AS v
WHERE v."labId" = s."labId" AND v."versionNumber" = 1;
ALTER TABLE "LabSession" ALTER COLUMN "labVersionId" SET NOT NULL;
ALTER TABLE "LabSession" ADD CONSTRAINT "LabSession_labVersionId_fkey"
    FOREIGN KEY ("labVersionId") REFERENCES "LabVersion" ("id");
CREATE INDEX "LabSession_labVersionId_idx" ON "LabSession" ("labVersionId");
CREATE UNIQUE INDEX "LabSession_userId_labId_active_key" ON "LabSession" ("userId", "labId")
    WHERE "status" IN ('IN_PROGRESS', 'STUCK', 'DEFERRED');
"""),
    ("04_verification_attempt", """
CREATE TYPE "VerificationResult" AS ENUM ('PASS', 'FAIL');
CREATE TABLE "VerificationAttempt" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "result" "VerificationResult" NOT NULL,
    "logs" JSONB NOT NULL,
    "verificationJobId" UUID,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "VerificationAttempt_pkey" PRIMARY KEY ("id")
);
INSERT INTO "VerificationAttempt" ("id", "sessionId", "commitSha", "result", "logs",
                                   "createdAt")
SELECT vl."id", vl."sessionId", vl."commitSha",
       CASE WHEN s."status" = 'VERIFIED_PASS' THEN 'PASS' ELSE 'FAIL' END::"VerificationResult",
       jsonb_build_object('prDiff', to_jsonb(vl."prDiff"), 'ciOutput', to_jsonb(vl."ciOutput")),
       vl."verifiedAt"
FROM "VerificationLog" AS vl JOIN "LabSession" AS s ON s."id" = vl."sessionId";
ALTER TABLE "VerificationAttempt" ADD CONSTRAINT "VerificationAttempt_sessionId_fkey"
    FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id");
CREATE INDEX "VerificationAttempt_sessionId_createdAt_idx"
    ON "VerificationAttempt" ("sessionId", "createdAt");
CREATE UNIQUE INDEX "VerificationAttempt_verificationJobId_key"
    ON "VerificationAttempt" ("verificationJobId");
"""),
    ("05_github_repo_mapping", """
CREATE TABLE "GitHubRepoMapping" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "provider" TEXT NOT NULL DEFAULT 'github',
    "providerRepoId" BIGINT,
    "repoFullName" TEXT NOT NULL,
    "repoUrl" TEXT NOT NULL,
    "defaultBranch" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "GitHubRepoMapping_pkey" PRIMARY KEY ("id")
);
INSERT INTO "GitHubRepoMapping" ("sessionId", "repoFullName", "repoUrl")
SELECT s."id", m.full_name, 'https://github.com/' || m.full_name
FROM "LabSession" AS s,
LATERAL (SELECT lower(regexp_replace(regexp_replace(s."userForkUrl",
    '^(https?://(www\\.)?github\\.com/|ssh://git@github\\.com/|git@github\\.com:)', '', 'i'),
    '(\\.git)?/?$', '')) AS full_name) AS m;
CREATE UNIQUE INDEX "GitHubRepoMapping_sessionId_key" ON "GitHubRepoMapping" ("sessionId");
CREATE INDEX "GitHubRepoMapping_repoUrl_idx" ON "GitHubRepoMapping" ("repoUrl");
ALTER TABLE "GitHubRepoMapping" ADD CONSTRAINT "GitHubRepoMapping_sessionId_fkey"
    FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id");
"""),
    ("06_ledger_and_queue", """
CREATE TABLE "LabAttempt" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL REFERENCES "LabSession" ("id"),
    "commitSha" TEXT NOT NULL,
    "deliveryId" TEXT NOT NULL,
    "branch" TEXT NOT NULL,
    "authorName" TEXT NOT NULL,
    "authorEmail" TEXT,
    "authorLogin" TEXT,
    "changedFiles" JSONB NOT NULL,
    "pushedAt" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "LabAttempt_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "LabAttempt_sessionId_commitSha_key" ON "LabAttempt" ("sessionId", "commitSha");
CREATE TYPE "VerificationJobStatus" AS ENUM ('QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'ERROR');
CREATE TABLE "VerificationJob" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "labAttemptId" UUID NOT NULL REFERENCES "LabAttempt" ("id"),
    "sessionId" UUID NOT NULL REFERENCES "LabSession" ("id"),
    "commitSha" TEXT NOT NULL,
    "status" "VerificationJobStatus" NOT NULL DEFAULT 'QUEUED',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "VerificationJob_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "VerificationJob_sessionId_commitSha_key"
    ON "VerificationJob" ("sessionId", "commitSha");
"""),
]


def run(conn, progress=None) -> dict[str, float]:
    """Run every naive file in a transaction of its own on ``conn`` (autocommit,
    application_name 'harness' so that the lock monitor attributes its locks);
    return the seconds per file."""
    times = {}
    for name, text in NAIVE_FILES:
        if progress:
            progress("apply", name)
        t0 = time.monotonic()
        with conn.transaction():
            conn.execute(text)
        times[name] = round(time.monotonic() - t0, 3)
        if progress:
            progress("applied", name)
    return times
