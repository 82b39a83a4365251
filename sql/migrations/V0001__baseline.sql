-- V0001__baseline: the production schema as built by Prisma (2026-01-24 .. 2026-02-09)
-- harness: baseline
--
-- What: recreates, object for object, the schema that the seven Prisma migrations
--   (init_trust_schema, add_immutability_triggers, add_auth_models,
--   add_auditlog_immutability_trigger, auditlog_actor_support,
--   lab_session_lifecycle_guard, identity_auth_tables) left in production.
-- Why: the pack needs one recorded starting point. On an empty database this file
--   builds it; on production the harness ADOPTS it instead (compares the live
--   catalog with what this file would create, records it without running it).
--   Keep this file byte-for-byte stable: adoption compares against it.
-- Locks: creates new objects only (no existing table is touched).
-- Rollback: drops these objects, and refuses (FM002) if any table holds rows.
--   The harness never rolls back the baseline of an adopted database.

-- Enum types --------------------------------------------------------------
CREATE TYPE "UserRole" AS ENUM ('USER', 'ADMIN', 'RECRUITER');

CREATE TYPE "AuthProvider" AS ENUM ('EMAIL', 'GOOGLE', 'GITHUB');

CREATE TYPE "SubscriptionTier" AS ENUM ('FREE', 'PRO', 'ENTERPRISE');

CREATE TYPE "LabStatus" AS ENUM (
    'IN_PROGRESS', 'STUCK', 'VERIFIED_PASS', 'DEFERRED'
);

CREATE TYPE "FailureClass" AS ENUM (
    'RESOURCE_LEAK',
    'STATE_CORRUPTION',
    'RENDERING_FAILURE',
    'SECURITY_EXPOSURE',
    'PERFORMANCE_DEGRADATION',
    'DATA_INTEGRITY'
);

-- Tables ------------------------------------------------------------------
CREATE TABLE "User" (
    "id" UUID NOT NULL,
    "githubId" TEXT,
    "email" TEXT NOT NULL,
    "role" "UserRole" NOT NULL DEFAULT 'USER',
    "icprScore" INTEGER NOT NULL DEFAULT 0,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "Account" (
    "id" TEXT NOT NULL,
    "userId" UUID NOT NULL,
    "type" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "providerAccountId" TEXT NOT NULL,
    "refresh_token" TEXT,
    "access_token" TEXT,
    "expires_at" INTEGER,
    "token_type" TEXT,
    "scope" TEXT,
    "id_token" TEXT,
    "session_state" TEXT,
    CONSTRAINT "Account_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "Session" (
    "id" TEXT NOT NULL,
    "sessionToken" TEXT NOT NULL,
    "userId" UUID NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "Session_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "VerificationToken" (
    "identifier" TEXT NOT NULL,
    "token" TEXT NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL
);

CREATE TABLE "AuthIdentity" (
    "id" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "provider" "AuthProvider" NOT NULL,
    "providerUserId" TEXT NOT NULL,
    CONSTRAINT "AuthIdentity_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "AuthSession" (
    "id" UUID NOT NULL,
    "sessionToken" TEXT NOT NULL,
    "userId" UUID NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "AuthSession_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "Lab" (
    "id" UUID NOT NULL,
    "title" TEXT NOT NULL,
    "epic" TEXT NOT NULL,
    "failureClass" "FailureClass" NOT NULL,
    "sourceGithubIssueUrl" TEXT NOT NULL,
    "repoVersion" TEXT NOT NULL,
    "baseRepoUrl" TEXT NOT NULL,
    "constraints" JSONB NOT NULL,
    CONSTRAINT "Lab_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "LabSession" (
    "id" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "labId" UUID NOT NULL,
    "status" "LabStatus" NOT NULL DEFAULT 'IN_PROGRESS',
    "userForkUrl" TEXT NOT NULL,
    "previewUrl" TEXT,
    "startedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastActivityAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "LabSession_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "VerificationLog" (
    "id" UUID NOT NULL,
    "sessionId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "prDiff" TEXT NOT NULL,
    "ciOutput" TEXT NOT NULL,
    "verifiedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "VerificationLog_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "ResumeBullet" (
    "id" UUID NOT NULL,
    "sessionId" UUID NOT NULL,
    "bulletText" TEXT NOT NULL,
    "atsKeywords" TEXT[],
    CONSTRAINT "ResumeBullet_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "AuditLog" (
    "id" UUID NOT NULL,
    "userId" UUID,
    "action" TEXT NOT NULL,
    "metadata" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actorId" TEXT NOT NULL,
    CONSTRAINT "AuditLog_pkey" PRIMARY KEY ("id")
);

-- Unique and plain indexes (Prisma names) ---------------------------------
CREATE UNIQUE INDEX "User_githubId_key" ON "User" ("githubId");

CREATE UNIQUE INDEX "User_email_key" ON "User" ("email");

CREATE UNIQUE INDEX "Account_provider_providerAccountId_key"
ON "Account" ("provider", "providerAccountId");

CREATE UNIQUE INDEX "Session_sessionToken_key" ON "Session" ("sessionToken");

CREATE UNIQUE INDEX "VerificationToken_token_key"
ON "VerificationToken" ("token");

CREATE UNIQUE INDEX "VerificationToken_identifier_token_key"
ON "VerificationToken" ("identifier", "token");

CREATE UNIQUE INDEX "AuthIdentity_provider_providerUserId_key"
ON "AuthIdentity" ("provider", "providerUserId");

CREATE UNIQUE INDEX "AuthSession_sessionToken_key"
ON "AuthSession" ("sessionToken");

CREATE INDEX "Lab_failureClass_idx" ON "Lab" ("failureClass");

CREATE UNIQUE INDEX "VerificationLog_sessionId_key"
ON "VerificationLog" ("sessionId");

CREATE UNIQUE INDEX "ResumeBullet_sessionId_key"
ON "ResumeBullet" ("sessionId");

-- Foreign keys: ON DELETE RESTRICT ON UPDATE CASCADE -----------------------
ALTER TABLE "Account" ADD CONSTRAINT "Account_userId_fkey"
FOREIGN KEY ("userId") REFERENCES "User" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "Session" ADD CONSTRAINT "Session_userId_fkey"
FOREIGN KEY ("userId") REFERENCES "User" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "AuthIdentity" ADD CONSTRAINT "AuthIdentity_userId_fkey"
FOREIGN KEY ("userId") REFERENCES "User" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "AuthSession" ADD CONSTRAINT "AuthSession_userId_fkey"
FOREIGN KEY ("userId") REFERENCES "User" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "LabSession" ADD CONSTRAINT "LabSession_userId_fkey"
FOREIGN KEY ("userId") REFERENCES "User" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "LabSession" ADD CONSTRAINT "LabSession_labId_fkey"
FOREIGN KEY ("labId") REFERENCES "Lab" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "VerificationLog" ADD CONSTRAINT "VerificationLog_sessionId_fkey"
FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "ResumeBullet" ADD CONSTRAINT "ResumeBullet_sessionId_fkey"
FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

ALTER TABLE "AuditLog" ADD CONSTRAINT "AuditLog_userId_fkey"
FOREIGN KEY ("userId") REFERENCES "User" ("id")
ON DELETE RESTRICT ON UPDATE CASCADE;

-- Functions and triggers ------------------------------------------------
-- The three function bodies below are production's, byte for byte (adoption
-- compares pg_proc.prosrc): their text between the dollar quotes, including
-- its two-space indentation, must never be reformatted. The refusals they
-- raise are production's too (P0001 and 42501); V0003 and V0011 build the
-- pack's guards on top of them.

-- Immutability triggers (add_immutability_triggers)
CREATE OR REPLACE FUNCTION prevent_destructive_action()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION
    'Action forbidden: This table is append-only. Rows cannot be updated or deleted.';
END;
$$;

CREATE TRIGGER verificationlog_immutable
BEFORE UPDATE OR DELETE ON "VerificationLog"
FOR EACH ROW EXECUTE FUNCTION prevent_destructive_action();

CREATE TRIGGER auditlog_immutable
BEFORE UPDATE OR DELETE ON "AuditLog"
FOR EACH ROW EXECUTE FUNCTION prevent_destructive_action();

CREATE TRIGGER resumebullet_immutable
BEFORE UPDATE OR DELETE ON "ResumeBullet"
FOR EACH ROW EXECUTE FUNCTION prevent_destructive_action();

-- AuditLog guard (add_auditlog_immutability_trigger)
CREATE OR REPLACE FUNCTION prevent_auditlog_mutations()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION 'AuditLog is append-only: % is forbidden', TG_OP
    USING ERRCODE = '42501';
END;
$$;

CREATE TRIGGER auditlog_no_update
BEFORE UPDATE ON "AuditLog"
FOR EACH ROW EXECUTE FUNCTION prevent_auditlog_mutations();

CREATE TRIGGER auditlog_no_delete
BEFORE DELETE ON "AuditLog"
FOR EACH ROW EXECUTE FUNCTION prevent_auditlog_mutations();

-- LabSession lifecycle guard (lab_session_lifecycle_guard)
CREATE OR REPLACE FUNCTION enforce_lab_session_status_transition()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.status <> 'IN_PROGRESS' THEN
      RAISE EXCEPTION 'Invalid initial LabSession status: %', NEW.status;
    END IF;
    RETURN NEW;
  END IF;

  IF TG_OP = 'UPDATE' THEN
    IF NEW.status = OLD.status THEN
      RETURN NEW;
    END IF;

    IF OLD.status = 'IN_PROGRESS' AND NEW.status IN ('IN_PROGRESS', 'STUCK', 'VERIFIED_PASS', 'DEFERRED') THEN
      RETURN NEW;
    ELSIF OLD.status = 'STUCK' AND NEW.status IN ('STUCK', 'IN_PROGRESS', 'VERIFIED_PASS', 'DEFERRED') THEN
      RETURN NEW;
    ELSIF OLD.status = 'DEFERRED' AND NEW.status IN ('DEFERRED', 'IN_PROGRESS') THEN
      RETURN NEW;
    ELSIF OLD.status = 'VERIFIED_PASS' AND NEW.status IN ('VERIFIED_PASS') THEN
      RETURN NEW;
    END IF;

    RAISE EXCEPTION 'Invalid LabSession status transition: % -> %', OLD.status, NEW.status;
  END IF;

  RETURN NEW;
END;
$$;

CREATE TRIGGER labsession_lifecycle_guard
BEFORE INSERT OR UPDATE ON "LabSession"
FOR EACH ROW EXECUTE FUNCTION enforce_lab_session_status_transition();
