-- V0006__lab_version: "LabVersion", immutable snapshots of a lab (B6 task 45)
--
-- What: creates "LabVersion" (one row per version of a lab, numbered 1, 2, ...
--   per lab) and backfills version 1 of every existing lab from its current
--   values. The versioned fields are every content column of "Lab": title, epic,
--   failureClass, sourceGithubIssueUrl, repoVersion, baseRepoUrl, constraints;
--   "snapshot" holds all of them as a JSON object, "repoVersion" and
--   "baseRepoUrl" are also columns because verification needs them directly.
--   The unique index on ("id", "labId") lets "LabSession" reference a version
--   together with its lab, so the database enforces that they agree.
-- Why: CONTRACT section 4; sessions must keep the lab they started on.
--   After a preserving rollback (forgea_archive."LabVersion_V0006_<time>" not yet
--   restored) the archived versions come back first, exactly (ids, numbers,
--   snapshots, createdAt); version 1 is then derived only for labs without any
--   version (labs created while rolled back), and a lab whose values were edited
--   while rolled back gets the next version, as V0007 would have appended it.
--   An archived version whose lab was deleted meanwhile refuses (FM003, naming
--   it; nothing changed).
-- Locks: new table only; the backfill reads "Lab" (ACCESS SHARE; labs are a
--   small curated table); the restore reads its archive table.
-- Rollback: drops the table; refuses (FM002) when any lab has more than one
--   version (that history exists nowhere else) unless forgea.rollback_preserve
--   is on, in which case every row is first copied to forgea_archive.

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

SELECT forgea_archive_restore('"LabVersion"', 'V0006');

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
