"""Row invariants (CONTRACT section 4) and evidence of what older versions let in.

One function per check; each fills the :class:`~harness.verify.report.Check`
it is given from ``ctx`` (:class:`~harness.verify.context.Context`: the
connection, which tables exist, the recorded migrations). The driver runs each
in its own savepoint, so one that errors fails alone.
"""

from __future__ import annotations

from .. import ledger
from .queries import rows as _rows
from .queries import rule as _rule



def _not_applied(c, have: dict, table: str) -> bool:
    """True (and an info finding) when ``table`` does not exist yet."""
    if have[table]:
        return False
    c.info(f'"{table}"', "not applied yet")
    return True


SHA_RE = "^[0-9a-f]{40}([0-9a-f]{24})?$"
#: tables whose timestamps restorable_values does not read (the harness's and Prisma's)
BOOKKEEPING_TABLES = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock",
                      "_harness_migration", "_prisma_migrations")


def lifecycle_completed_at(c, ctx) -> None:
    """LabSession.completedAt is set exactly when the session is terminal."""
    conn, cols = ctx.conn, ctx.lab_session_columns
    if "completedAt" in cols:
        _rule(c, conn, '"LabSession"', "completedAt set while active or NULL while terminal",
              """SELECT s."id"::text || ' (' || s."status" || ', completedAt '
                        || coalesce(s."completedAt"::text, 'NULL') || ')'
                 FROM public."LabSession" s
                 WHERE (s."status"::text IN ('VERIFIED_PASS', 'FAILED'))
                       <> (s."completedAt" IS NOT NULL) ORDER BY s."id" """)
    else:
        c.info('"LabSession"', "completedAt not applied yet")


def lab_version_agreement(c, ctx) -> None:
    """Every session names a version of its own lab; versions are dense 1..n per lab;
    every lab has one."""
    conn, have, cols = ctx.conn, ctx.have, ctx.lab_session_columns
    if "labVersionId" in cols and have["LabVersion"]:
        _rule(c, conn, '"LabSession".labVersionId',
              "missing, or a version of another lab",
              """SELECT s."id"::text FROM public."LabSession" s
                 LEFT JOIN public."LabVersion" v ON v."id" = s."labVersionId"
                 WHERE v."id" IS NULL OR v."labId" <> s."labId" ORDER BY s."id" """)
        _rule(c, conn, '"LabVersion".versionNumber', "not dense 1..n per lab (lab ids)",
              """SELECT v."labId"::text FROM public."LabVersion" v GROUP BY v."labId"
                 HAVING max(v."versionNumber") <> count(*) OR min(v."versionNumber") <> 1
                 ORDER BY 1""")
        _rule(c, conn, '"Lab"', "labs without a LabVersion",
              """SELECT l."id"::text FROM public."Lab" l WHERE NOT EXISTS (
                   SELECT 1 FROM public."LabVersion" v WHERE v."labId" = l."id") ORDER BY 1""")
    else:
        c.info('"LabSession"', "labVersionId not applied yet")


def one_active_session_per_user_lab(c, ctx) -> None:
    """At most one active session per (user, lab)."""
    conn, have = ctx.conn, ctx.have
    if have["LabSession"]:
        _rule(c, conn, '"LabSession" (userId, labId)', "more than one active session",
              """SELECT s."userId"::text || '/' || s."labId"::text || ': '
                        || string_agg(s."id"::text, ', ' ORDER BY s."id")
                 FROM public."LabSession" s
                 WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
                 GROUP BY s."userId", s."labId" HAVING count(*) > 1 ORDER BY 1""")


def one_active_session_per_repo(c, ctx) -> None:
    """A repository (id or URL) is bound to at most one active session; the
    mapping mirrors its session's status; repository URLs are canonical."""
    conn, have = ctx.conn, ctx.have
    if have["GitHubRepoMapping"]:
        for col in ("providerRepoId", "repoUrl"):
            _rule(c, conn, f'"GitHubRepoMapping".{col}', "bound to more than one active session",
                  f"""SELECT m."{col}"::text || ': ' || string_agg(s."id"::text, ', ')
                      FROM public."GitHubRepoMapping" m
                      JOIN public."LabSession" s ON s."id" = m."sessionId"
                      WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
                        AND m."{col}" IS NOT NULL
                      GROUP BY m."{col}" HAVING count(*) > 1 ORDER BY 1""")
        _rule(c, conn, '"GitHubRepoMapping".sessionActive',
              "does not mirror the session's status (mapping ids)",
              """SELECT m."id"::text FROM public."GitHubRepoMapping" m
                 JOIN public."LabSession" s ON s."id" = m."sessionId"
                 WHERE m."sessionActive"
                       <> (s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED'))
                 ORDER BY 1""")
        _rule(c, conn, '"GitHubRepoMapping".repoUrl', "not canonical (mapping ids)",
              """SELECT m."id"::text FROM public."GitHubRepoMapping" m
                 WHERE m."repoUrl" IS DISTINCT FROM public.canonical_repo_url(m."repoUrl")
                 ORDER BY 1""")
    else:
        c.info('"GitHubRepoMapping"', "not applied yet")


def job_status_consistency(c, ctx) -> None:
    """completedAt set iff terminal, a lease iff RUNNING, runCount within 0..3 and
    agreeing with startedAt; RUNNING jobs claimed without a lease token (info)."""
    conn, have = ctx.conn, ctx.have
    if _not_applied(c, have, "VerificationJob"):
        return
    J = 'FROM public."VerificationJob" j WHERE '
    _rule(c, conn, '"VerificationJob".completedAt', "set iff terminal: violated",
          f"""SELECT j."id"::text || ' (' || j."status" || ')' {J}
              (j."status"::text IN ('PASSED', 'FAILED', 'ERROR'))
              <> (j."completedAt" IS NOT NULL) ORDER BY j."id" """)
    _rule(c, conn, '"VerificationJob" lease', "RUNNING without a lease or QUEUED with one",
          f"""SELECT j."id"::text || ' (' || j."status" || ')' {J}
              (j."status" = 'RUNNING' AND (j."leaseOwner" IS NULL
                                           OR j."leaseExpiresAt" IS NULL))
              OR (j."status" = 'QUEUED' AND (j."leaseOwner" IS NOT NULL
                                             OR j."leaseExpiresAt" IS NOT NULL))
              ORDER BY j."id" """)
    _rule(c, conn, '"VerificationJob".runCount',
          "outside 0..3, or started without a run / run without startedAt",
          f"""SELECT j."id"::text || ' (runCount ' || j."runCount" || ')' {J}
              j."runCount" NOT BETWEEN 0 AND 3
              OR (j."runCount" = 0) <> (j."startedAt" IS NULL)
              OR (j."status" <> 'QUEUED' AND j."runCount" = 0)
              ORDER BY j."id" """)
    if conn.execute("""SELECT 1 FROM pg_catalog.pg_attribute
                       WHERE attrelid = 'public."VerificationJob"'::regclass
                         AND attname = 'leaseTokenHash' AND NOT attisdropped""").fetchone():
        _rule(c, conn, '"VerificationJob".leaseTokenHash',
              "RUNNING jobs claimed without a lease token (by the pre-release chain): completable by "
              "their leaseOwner alone until the lease ends",
              f"""SELECT j."id"::text || ' (leaseOwner ' || j."leaseOwner" || ')' {J}
                  j."status" = 'RUNNING' AND j."leaseTokenHash" IS NULL ORDER BY j."id" """,
              info=True)


def one_running_job_per_session(c, ctx) -> None:
    """At most one RUNNING job per session."""
    conn, have = ctx.conn, ctx.have
    if _not_applied(c, have, "VerificationJob"):
        return
    _rule(c, conn, '"VerificationJob" (sessionId)', "more than one RUNNING job",
          """SELECT j."sessionId"::text || ': ' || string_agg(j."id"::text, ', ')
             FROM public."VerificationJob" j WHERE j."status" = 'RUNNING'
             GROUP BY j."sessionId" HAVING count(*) > 1 ORDER BY 1""")


def job_commit_matches_attempt(c, ctx) -> None:
    """A job's commit and session are those of its LabAttempt."""
    conn, have = ctx.conn, ctx.have
    if _not_applied(c, have, "VerificationJob"):
        return
    _rule(c, conn, '"VerificationJob".commitSha',
          "differs from its LabAttempt's (or session differs / attempt missing)",
          """SELECT j."id"::text FROM public."VerificationJob" j
             LEFT JOIN public."LabAttempt" a ON a."id" = j."labAttemptId"
             WHERE a."id" IS NULL OR a."commitSha" <> j."commitSha"
                   OR a."sessionId" <> j."sessionId" ORDER BY 1""")


def job_attempt_results(c, ctx) -> None:
    """A PASSED (FAILED) job has exactly one PASS (FAIL) attempt; every attempt's job
    is in the matching terminal status, for the same session and commit."""
    conn, have = ctx.conn, ctx.have
    if _not_applied(c, have, "VerificationJob"):
        return
    if have["VerificationAttempt"]:
        _rule(c, conn, '"VerificationJob" PASSED', "without exactly one PASS attempt",
              """SELECT j."id"::text FROM public."VerificationJob" j
                 WHERE j."status" = 'PASSED' AND (
                   SELECT count(*) FROM public."VerificationAttempt" a
                   WHERE a."verificationJobId" = j."id" AND a."result" = 'PASS') <> 1
                 ORDER BY 1""")
        _rule(c, conn, '"VerificationJob" FAILED', "without exactly one FAIL attempt",
              """SELECT j."id"::text FROM public."VerificationJob" j
                 WHERE j."status" = 'FAILED' AND (
                   SELECT count(*) FROM public."VerificationAttempt" a
                   WHERE a."verificationJobId" = j."id" AND a."result" = 'FAIL') <> 1
                 ORDER BY 1""")
        _rule(c, conn, '"VerificationAttempt".verificationJobId',
              "attempt whose job is not in the matching terminal status, or whose "
              "session/commit differ from the job's (attempt ids)",
              """SELECT a."id"::text FROM public."VerificationAttempt" a
                 JOIN public."VerificationJob" j ON j."id" = a."verificationJobId"
                 WHERE j."status"::text <> CASE a."result" WHEN 'PASS' THEN 'PASSED'
                                                          ELSE 'FAILED' END
                    OR j."sessionId" <> a."sessionId" OR j."commitSha" <> a."commitSha"
                 ORDER BY 1""")


#: VERIFIED_PASS sessions whose every PASS attempt has no job, with those attempts
_JOBLESS_PASSES = """
    SELECT s."id"::text, array_agg(a."id"::text ORDER BY a."id")
    FROM public."LabSession" AS s
    JOIN public."VerificationAttempt" AS a ON a."sessionId" OPERATOR(pg_catalog.=) s."id"
    WHERE s."status" OPERATOR(pg_catalog.=) 'VERIFIED_PASS'
      AND a."result" OPERATOR(pg_catalog.=) 'PASS' AND a."verificationJobId" IS NULL
      AND NOT EXISTS (
        SELECT 1 FROM public."VerificationAttempt" AS p
        WHERE p."sessionId" OPERATOR(pg_catalog.=) s."id"
          AND p."result" OPERATOR(pg_catalog.=) 'PASS' AND p."verificationJobId" IS NOT NULL)
    GROUP BY s."id" ORDER BY 1"""


def verified_pass_has_pass_attempt(c, ctx) -> None:
    """A VERIFIED_PASS session has a PASS attempt of a job. What the lifecycle before
    FL002 let in (a pass without any PASS attempt; a PASS attempt without a job, copied
    from VerificationLog) is excused only by evidence kept off the database: the
    ``legacy`` section of the checkpoint given with ``--checkpoint``. Nothing the owner
    can write (the bookkeeping's applied_at, completedAt, a row without a job) excuses
    it: without such a checkpoint, or when it does not list the session (the attempt),
    it is a failure."""
    conn, have = ctx.conn, ctx.have
    if not (have["VerificationAttempt"] and have["LabSession"]):
        c.info('"VerificationAttempt"', "not applied yet")
        return
    section = (ctx.checkpoint or {}).get("legacy")
    why = ("not listed in the checkpoint's legacy section: made after it was taken"
           if section else "unproven: no checkpoint with a legacy section was given "
                           "(--checkpoint) to show it is legacy")
    found = ledger.legacy_passes(conn) or []
    listed = set(section["sessions"]) if section else set()
    unproven = [s for s in found if s not in listed]
    excused = [s for s in found if s in listed]
    if unproven:
        c.fail('"LabSession" VERIFIED_PASS', f"without a PASS VerificationAttempt, {why}",
               unproven, len(unproven))
    if excused:
        c.info('"LabSession" VERIFIED_PASS',
               f"legacy passes without a PASS attempt, listed by the checkpoint's legacy "
               f"section (digest {section['digest'][:16]})", excused, len(excused))
    listed_attempts = set(section["attempts"]) if section else set()
    jobless = _rows(conn, _JOBLESS_PASSES)
    bad = [f"{sid} (attempts {', '.join(a)})" for sid, a in jobless
           if not set(a) & listed_attempts]
    if bad:
        c.fail('"LabSession" VERIFIED_PASS',
               f"its only PASS attempts have no job (legacy copies?), {why}", bad, len(bad))
    ok = [sid for sid, a in jobless if set(a) & listed_attempts]
    if ok:
        c.info('"LabSession" VERIFIED_PASS', "legacy passes by a PASS attempt without a job "
               "(a copy of VerificationLog), listed by the checkpoint's legacy section",
               ok, len(ok))


def sha_format(c, ctx) -> None:
    """Commit SHAs are lowercase hex of 40 or 64 characters; legacy copies of
    VerificationLog with a non-hex SHA are info."""
    conn, have = ctx.conn, ctx.have
    for table, col, where in (("LabAttempt", "commitSha", "true"),
                              ("VerificationJob", "commitSha", "true"),
                              ("GitHubPushDelivery", "headSha", "true"),
                              ("VerificationAttempt", "commitSha",
                               't."verificationJobId" IS NOT NULL')):
        if have[table]:
            _rule(c, conn, f'"{table}".{col}', "not lowercase hex of 40 or 64 characters",
                  f"""SELECT t."id"::text FROM public."{table}" t
                      WHERE {where} AND t."{col}" !~ %s ORDER BY 1""", (SHA_RE,))
    if have["VerificationAttempt"]:
        _rule(c, conn, '"VerificationAttempt".commitSha',
              "legacy rows kept: copies of VerificationLog with a non-hex SHA",
              """SELECT t."id"::text FROM public."VerificationAttempt" t
                 WHERE t."verificationJobId" IS NULL AND t."commitSha" !~ %s ORDER BY 1""",
              (SHA_RE,), info=True)
    elif have["VerificationLog"]:
        _rule(c, conn, '"VerificationLog".commitSha', "legacy rows kept: non-hex SHA",
              """SELECT t."id"::text FROM public."VerificationLog" t
                 WHERE t."commitSha" !~ %s ORDER BY 1""", (SHA_RE,), info=True)


#: audit rows that name a session and the session's user at the time they were written
_SESSION_AUDIT = ("LAB_STATUS_TRANSITION", "PUSH_RECORDED", "PUSH_DUPLICATE_DELIVERY",
                  "PUSH_REJECTED")


def session_identity(c, ctx) -> None:
    """Evidence that a session's identity changed after it was created (what the pack
    before the identity guard let an UPDATE do): its user differs from the user its own audit rows
    name; the arguments digest create_lab_session() stored with its binding no longer
    matches the session's user and lab; its userForkUrl no longer canonicalises to the
    repository it is bound to; its startedAt moved away from the time it was bound."""
    conn, have = ctx.conn, ctx.have
    if not have["LabSession"]:
        c.info('"LabSession"', "not applied yet")
        return
    _rule(c, conn, '"LabSession".userId',
          "differs from the user its audit rows were written for (session: user / audited "
          "user / AuditLog row)",
          """SELECT s."id"::text || ': ' || s."userId"::text || ' / '
                    || coalesce(a."userId"::text, 'NULL') || ' / ' || a."id"::text
             FROM public."AuditLog" a
             JOIN public."LabSession" s ON s."id"::text
                  = coalesce(a."metadata" ->> 'labSessionId', a."metadata" ->> 'sessionId')
             WHERE a."action" = ANY(%s) AND a."userId" IS DISTINCT FROM s."userId"
             ORDER BY s."id", a."id" """, (list(_SESSION_AUDIT),))
    if have["GitHubRepoMapping"]:
        _rule(c, conn, '"LabSession" (userId, labId)',
              "no longer match the arguments create_lab_session() bound the session with "
              "(GitHubRepoMapping.requestDigest; session ids)",
              """SELECT s."id"::text FROM public."GitHubRepoMapping" m
                 JOIN public."LabSession" s ON s."id" = m."sessionId"
                 WHERE m."requestDigest" IS NOT NULL AND m."requestDigest" NOT IN (
                   sha256(convert_to(concat_ws(E'\n', s."userId"::text, s."labId"::text,
                                               m."repoUrl", '-'), 'UTF8')),
                   sha256(convert_to(concat_ws(E'\n', s."userId"::text, s."labId"::text,
                                               m."repoUrl", m."providerRepoId"::text),
                                     'UTF8')))
                 ORDER BY 1""")
        _rule(c, conn, '"LabSession".userForkUrl',
              "does not canonicalise to the repository the session is bound to "
              "(session: userForkUrl / GitHubRepoMapping.repoUrl)",
              """SELECT s."id"::text || ': ' || left(s."userForkUrl", 120) || ' / '
                        || m."repoUrl"
                 FROM public."GitHubRepoMapping" m
                 JOIN public."LabSession" s ON s."id" = m."sessionId"
                 WHERE public.canonical_repo_url(s."userForkUrl") IS DISTINCT FROM m."repoUrl"
                 ORDER BY 1""")
        _rule(c, conn, '"LabSession".startedAt',
              "more than a day away from when create_lab_session() bound the session "
              "(session: startedAt / GitHubRepoMapping.createdAt, UTC)",
              """SELECT s."id"::text || ': ' || s."startedAt"::text || ' / '
                        || m."createdAt"::text
                 FROM public."GitHubRepoMapping" m
                 JOIN public."LabSession" s ON s."id" = m."sessionId"
                 WHERE m."idempotencyKey" IS NOT NULL
                   AND abs(extract(epoch FROM s."startedAt" - m."createdAt")) > 86400
                 ORDER BY 1""")


def repo_binding_agreement(c, ctx) -> None:
    """Evidence that a repository id captured another session's pushes (what
    record_push of the pre-release chain let through): a push recorded in one session for a URL
    bound to another session, or for a repository id other than its binding's."""
    conn, have = ctx.conn, ctx.have
    if not (have["GitHubRepoMapping"] and have["LabAttempt"]):
        c.info('"GitHubRepoMapping"', "not applied yet")
        return
    _rule(c, conn, '"AuditLog" PUSH_RECORDED',
          "push recorded in one session for a repository URL bound to another session "
          "(recording session / pushed URL / session bound to it / AuditLog row)",
          """SELECT m."sessionId"::text || ' / ' || (a."metadata" ->> 'repoUrl') || ' / '
                    || o."sessionId"::text || ' / ' || a."id"::text
             FROM public."AuditLog" a
             JOIN public."GitHubRepoMapping" m ON m."sessionId"::text = a."metadata" ->> 'sessionId'
             JOIN public."GitHubRepoMapping" o ON o."repoUrl" = a."metadata" ->> 'repoUrl'
                  AND o."sessionId" <> m."sessionId"
             WHERE a."action" = 'PUSH_RECORDED' AND m."repoUrl" <> a."metadata" ->> 'repoUrl'
             ORDER BY 1""")
    _rule(c, conn, '"GitHubRepoMapping".providerRepoId',
          "differs from the repository id a push was recorded for (session / bound id / "
          "pushed id)",
          """SELECT DISTINCT m."sessionId"::text || ' / ' || m."providerRepoId"::text || ' / '
                    || (a."metadata" ->> 'providerRepoId')
             FROM public."AuditLog" a
             JOIN public."GitHubRepoMapping" m ON m."sessionId"::text = a."metadata" ->> 'sessionId'
             WHERE a."action" = 'PUSH_RECORDED' AND m."providerRepoId" IS NOT NULL
               AND a."metadata" ->> 'providerRepoId' IS NOT NULL
               AND m."providerRepoId"::text <> a."metadata" ->> 'providerRepoId'
             ORDER BY 1""")


#: the largest timestamp(3) whose text form a restore can read back
_MAX_RESTORABLE = "294276-12-31 23:59:59.999"


def restorable_values(c, ctx) -> None:
    """Values an earlier version of the pack (or a direct write) let in that a dump
    cannot restore or the push ledger's hash cannot tell apart: timestamps past the
    restorable maximum (timestamp(3) rounding of '294276-12-31 23:59:59.9999'
    stores 294277-01-01, which pg_dump writes but no restore reads), BC push times
    (the hash layout writes the year without an era), and values outside the bounds
    V0019 puts on the API (info)."""
    conn, have = ctx.conn, ctx.have
    cols = _rows(conn, """
        SELECT c.relname, a.attname, EXISTS (
                 SELECT 1 FROM pg_catalog.pg_attribute i WHERE i.attrelid = c.oid
                 AND i.attname = 'id' AND NOT i.attisdropped)
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
          AND NOT a.attisdropped
          AND a.atttypid IN ('timestamp'::regtype, 'timestamptz'::regtype)
          AND NOT (c.relname = ANY(%s))
        ORDER BY 1, 2""", (list(BOOKKEEPING_TABLES),))
    by_table: dict[str, tuple[list[str], bool]] = {}
    for rel, col, has_id in cols:
        by_table.setdefault(rel, ([], has_id))[0].append(col)
    for rel, (tcols, has_id) in sorted(by_table.items()):
        key = 't."id"::text' if has_id else 't.ctid::text'
        cond = " OR ".join(f't."{col}" > %s::timestamp' for col in tcols)
        _rule(c, conn, f'"{rel}" ({", ".join(tcols)})',
              "timestamps past year 294276 that pg_dump writes but no restore reads back",
              f'SELECT {key} FROM public."{rel}" t WHERE {cond} ORDER BY 1',
              [_MAX_RESTORABLE] * len(tcols))
    if have["LabAttempt"]:
        _rule(c, conn, '"LabAttempt".pushedAt',
              "BC push times: the row hash writes the year without an era, so the same "
              "date AD hashes alike",
              """SELECT t."id"::text || ' (' || t."pushedAt"::text || ')'
                 FROM public."LabAttempt" t WHERE t."pushedAt" < '0001-01-01' ORDER BY 1""")
        _rule(c, conn, '"LabAttempt".pushedAt',
              "outside 2005-04-07 .. a day after the row was recorded (accepted before "
              "V0019)",
              """SELECT t."id"::text || ' (' || t."pushedAt"::text || ')'
                 FROM public."LabAttempt" t
                 WHERE t."pushedAt" >= '0001-01-01' AND (t."pushedAt" < '2005-04-07'
                       OR t."pushedAt" > t."createdAt" + interval '1 day') ORDER BY 1""",
              info=True)
    if have["GitHubRepoMapping"]:
        _rule(c, conn, '"GitHubRepoMapping".providerRepoId',
              "above 2^53 - 1 (accepted by the pre-release chain; no JSON payload can carry it exactly)",
              """SELECT t."id"::text FROM public."GitHubRepoMapping" t
                 WHERE t."providerRepoId" > 9007199254740991 ORDER BY 1""", info=True)
    if have["VerificationJob"]:
        _rule(c, conn, '"VerificationJob".exitCode',
              "outside -255 .. 255 (accepted by the pre-release chain)",
              """SELECT t."id"::text FROM public."VerificationJob" t
                 WHERE t."exitCode" NOT BETWEEN -255 AND 255 ORDER BY 1""", info=True)
