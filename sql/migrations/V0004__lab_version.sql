-- V0004__lab_version: the FAILED status and "LabVersion", immutable snapshots of a lab
--
-- What:
--   ALTER TYPE "LabStatus" ADD VALUE 'FAILED' (after DEFERRED).
--
--   creates "LabVersion" (one row per version of a lab, numbered 1, 2, ...
--   per lab) and backfills version 1 of every existing lab from its current
--   values. The versioned fields are every content column of "Lab": title, epic,
--   failureClass, sourceGithubIssueUrl, repoVersion, baseRepoUrl, constraints;
--   "snapshot" holds all of them as a JSON object, "repoVersion" and
--   "baseRepoUrl" are also columns because verification needs them directly.
--   The unique index on ("id", "labId") lets "LabSession" reference a version
--   together with its lab, so the database enforces that they agree.
-- Why: CONTRACT section 4 (FAILED; LabVersion). FAILED is added here, before
--   any file uses it: a new enum value cannot be used in the transaction that
--   adds it, and the lifecycle (V0007) and constraints (V0010) that use it run
--   in later transactions.
-- Transaction: yes.
-- Locks: ALTER TYPE ... ADD VALUE locks the type only (no table rewrite or
--   scan); "LabVersion" is new; the backfill reads "Lab" (ACCESS SHARE; labs
--   are a small curated table). At 1M sessions: under 0.1 s.
-- Pre-conditions: none.
-- Rollback: refuses (FM002) when any lab has a version above 1 (history found
--   nowhere else) unless forgea.rollback_preserve is on, which archives every
--   version first; drops "LabVersion". Then rebuilds "LabStatus" without
--   FAILED: refuses (FM002, naming the sessions) while any session is FAILED.
--   This is the one-way door of the release: once a session is FAILED, no
--   rollback below this file is possible (docs/dba.md). Retyping the status
--   column takes ACCESS EXCLUSIVE on "LabSession" and rewrites it (about 2 s
--   per 1M sessions; maintenance window).

ALTER TYPE "LabStatus" ADD VALUE IF NOT EXISTS 'FAILED' AFTER 'DEFERRED';

CREATE TABLE "LabVersion" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "labId" UUID NOT NULL,
    "versionNumber" INTEGER NOT NULL,
    "repoVersion" TEXT NOT NULL,
    "baseRepoUrl" TEXT NOT NULL,
    "snapshot" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    CONSTRAINT "LabVersion_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "LabVersion_versionNumber_check" CHECK ("versionNumber" > 0),
    CONSTRAINT "LabVersion_snapshot_check" CHECK (
        jsonb_typeof("snapshot") = 'object'
    ),
    CONSTRAINT "LabVersion_labId_fkey" FOREIGN KEY ("labId")
    REFERENCES "Lab" ("id") ON DELETE RESTRICT ON UPDATE RESTRICT
);

CREATE UNIQUE INDEX "LabVersion_labId_versionNumber_key"
ON "LabVersion" ("labId", "versionNumber");

CREATE UNIQUE INDEX "LabVersion_id_labId_key"
ON "LabVersion" ("id", "labId");

SELECT forgea_archive_restore('"LabVersion"', 'V0004');

INSERT INTO "LabVersion" (
    "labId", "versionNumber", "repoVersion", "baseRepoUrl", "snapshot"
)
SELECT
    c."id",
    coalesce(latest."versionNumber", 0) + 1,
    c."repoVersion",
    c."baseRepoUrl",
    c."snapshot"
FROM (
    SELECT
        l."id",
        l."repoVersion",
        l."baseRepoUrl",
        jsonb_build_object(
            'title', l."title",
            'epic', l."epic",
            'failureClass', l."failureClass",
            'sourceGithubIssueUrl', l."sourceGithubIssueUrl",
            'repoVersion', l."repoVersion",
            'baseRepoUrl', l."baseRepoUrl",
            'constraints', l."constraints"
        ) AS "snapshot"
    FROM "Lab" AS l
) AS c
LEFT JOIN LATERAL (
    SELECT v."versionNumber", v."snapshot" FROM "LabVersion" AS v
    WHERE v."labId" = c."id"
    ORDER BY v."versionNumber" DESC
    LIMIT 1
) AS latest ON TRUE
WHERE latest."snapshot" IS DISTINCT FROM c."snapshot";

GRANT SELECT ON "LabVersion" TO forgea_app, forgea_worker, forgea_readonly;
