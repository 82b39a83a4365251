"""Production-like data for ``harness bench``, generated set-based on the server.

``generate(dsn, scale)`` expects a database at the baseline (``V0001`` +
``V0002__roles_and_archive`` applied, nothing else) and fills it, entirely with
``INSERT ... SELECT ... generate_series`` (no row crosses the network):

* ``User``: ``scale // 100`` users (at least 20) plus spare users with no
  sessions (``spare<k>``) that the simulated app and the API benchmarks use to
  open new sessions without breaking "one active session per user and lab";
* ``Lab``: 50 labs;
* ``LabSession``: ``scale`` rows. Session ``i`` belongs to user ``i % U`` and lab
  ``(i // U) % 50`` in round ``r = i // (50 U)``. Only round 0 holds active
  sessions (60% IN_PROGRESS, 15% STUCK, 10% DEFERRED, 15% VERIFIED_PASS); later
  rounds are VERIFIED_PASS, so no user has two active sessions of one lab. Fork
  URLs are unique per session and come in every GitHub form (https, http, www,
  ``.git``, trailing slash, ``ssh://git@``, ``git@github.com:``, mixed case) plus
  about 0.15% unparseable ones (another host, not a URL);
* ``VerificationLog``: ``scale`` rows (one per session; the legacy table allows
  one), ``prDiff`` about 3 KB and ``ciOutput`` about 1.5-2.5 KB: 40% valid JSON,
  50% plain text, 10% text that starts like JSON but is not; ~0.3% legacy SHAs
  that are not lowercase hex 40/64 (uppercase, short), ~0.3% SHA-256;
* ``AuditLog``: ``10 * scale`` small rows (1/7 without a user).

Ids are deterministic (``md5('session' || i)::uuid`` ...), so the benchmark can
name existing rows without reading them back (see :func:`session_id`).

The production lifecycle trigger only accepts IN_PROGRESS inserts. This is data
generation standing in for years of production traffic, so, as the table owner,
it disables ``labsession_lifecycle_guard`` for the one bulk insert and enables it
again right after (the trigger is back exactly as the baseline defines it, an
ordinary trigger, before the migration chain runs).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid

import psycopg

LABS = 50
SPARE_USERS_APP = 2000     # 2000 x 50 labs = 100k (user, lab) pairs for app inserts
SPARE_USERS_BENCH = 400    # 400 x 50 = 20k pairs for create_lab_session in the API benches
AUDIT_CHUNK = 2_000_000


def _md5_uuid(s: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(s.encode()).hexdigest())


def session_id(i: int) -> uuid.UUID:
    return _md5_uuid(f"session{i}")


def vlog_id(i: int) -> uuid.UUID:
    return _md5_uuid(f"vlog{i}")


def lab_id(k: int) -> uuid.UUID:
    return _md5_uuid(f"lab{k}")


def spare_user_id(k: int) -> uuid.UUID:
    """Spare users 0..SPARE_USERS_APP-1 are the app's; the next SPARE_USERS_BENCH the API benches'."""
    return _md5_uuid(f"spare{k}")


def users_for(scale: int) -> int:
    return max(20, scale // 100)


def _log(log, msg):
    if log:
        log(msg)


SQL_USERS = """
INSERT INTO "User" ("id", "githubId", "email", "role", "icprScore", "createdAt", "updatedAt")
SELECT md5('user' || g)::uuid, CASE WHEN g % 3 = 0 THEN NULL ELSE 'gh' || g END,
       'user' || g || '@example.test',
       (CASE WHEN g % 97 = 0 THEN 'ADMIN' WHEN g % 89 = 0 THEN 'RECRUITER' ELSE 'USER' END)::"UserRole",
       g % 1000, timestamp '2025-06-01' + g * interval '7 seconds',
       timestamp '2025-06-01' + g * interval '9 seconds'
FROM generate_series(0, %(users)s - 1) AS g
UNION ALL
SELECT md5('spare' || g)::uuid, NULL, 'spare' || g || '@example.test', 'USER', 0,
       timestamp '2026-01-01', timestamp '2026-01-01'
FROM generate_series(0, %(spare)s - 1) AS g
"""

SQL_LABS = """
INSERT INTO "Lab" ("id", "title", "epic", "failureClass", "sourceGithubIssueUrl",
                   "repoVersion", "baseRepoUrl", "constraints")
SELECT md5('lab' || k)::uuid, 'Lab ' || k || ': fix the leak', 'epic-' || (k % 7),
       (enum_range(NULL::"FailureClass"))[1 + k % 6],
       'https://github.com/forgea-labs/lab-' || k || '/issues/' || (k * 13 + 1),
       'v1.' || k || '.0', 'https://github.com/forgea-labs/lab-' || k,
       jsonb_build_object('timeLimitMinutes', 60 + k, 'allowedPaths',
                          jsonb_build_array('src/', 'test/'), 'maxMemoryMb', 512)
FROM generate_series(0, %(labs)s - 1) AS k
"""

# owner / name of session i: user<u>/lab<l>-r<r>-s<i> (unique), in mixed GitHub forms
SQL_SESSIONS = """
INSERT INTO "LabSession" ("id", "userId", "labId", "status", "userForkUrl", "previewUrl",
                          "startedAt", "lastActivityAt")
SELECT md5('session' || i)::uuid, md5('user' || u)::uuid, md5('lab' || l)::uuid,
       (CASE WHEN r > 0 THEN 'VERIFIED_PASS'
             WHEN h < 60 THEN 'IN_PROGRESS' WHEN h < 75 THEN 'STUCK'
             WHEN h < 85 THEN 'DEFERRED' ELSE 'VERIFIED_PASS' END)::"LabStatus",
       CASE
         WHEN i % 997 = 0 THEN 'https://gitlab.com/user' || u || '/lab' || l || '-s' || i
         WHEN i % 1999 = 0 THEN 'not a url ' || i
         ELSE CASE i % 16
           WHEN 6 THEN 'http://github.com/'
           WHEN 7 THEN 'https://www.github.com/'
           WHEN 10 THEN 'git@github.com:'
           WHEN 11 THEN 'ssh://git@github.com/'
           WHEN 12 THEN 'HTTPS://GitHub.com/'
           ELSE 'https://github.com/' END
           || CASE WHEN i % 5 = 0 THEN 'User' ELSE 'user' END || u
           || '/lab' || l || '-r' || r || '-s' || i
           || CASE i % 16 WHEN 8 THEN '.git' WHEN 9 THEN '/' WHEN 10 THEN '.git'
                          WHEN 12 THEN '.git/' ELSE '' END
       END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'https://preview.forgea.test/s/' || i END,
       timestamp '2025-06-01' + i * interval '13 seconds',
       timestamp '2025-06-01' + i * interval '13 seconds' + (h * interval '1 hour')
FROM (
    SELECT i, i %% %(users)s AS u, (i / %(users)s) %% %(labs)s AS l,
           i / (%(users)s * %(labs)s) AS r,
           ('x' || substr(md5('h' || i), 1, 7))::bit(28)::int %% 100 AS h
    FROM generate_series(%(lo)s, %(hi)s - 1) AS i
) AS s
"""

SQL_TEMPLATES = """
CREATE TEMP TABLE _tpl_diff AS
SELECT k, string_agg(format(E'@@ -%%s,7 +%%s,8 @@\\n-  const v%%s = "%%s";\\n+  const v%%s = "%%s"; // %%s\\n',
                             j * 10, j * 10, j, md5(k || ':' || j), j,
                             md5(j || ':' || k), substr(md5(k * j || 'c'), 1, 12)), '') AS body
FROM generate_series(0, 63) AS k, generate_series(1, 22) AS j GROUP BY k;
CREATE TEMP TABLE _tpl_ci AS
SELECT k,
  CASE WHEN k % 10 < 4 THEN
    jsonb_build_object('status', CASE WHEN k % 3 = 0 THEN 'failed' ELSE 'passed' END,
      'durationMs', 1000 + k * 37, 'runner', 'forgea-ci-' || (k % 5),
      'steps', (SELECT jsonb_agg(jsonb_build_object('name', 'step ' || j, 'exit', (j + k) % 2,
                                 'log', 'ok ' || md5(k || '-' || j) || ' ' || md5(j || '-' || k)))
                FROM generate_series(1, 18) AS j))::text
  WHEN k % 10 < 9 THEN
    (SELECT string_agg(format(E'[%%s] PASS tests/unit/case_%%s.test.ts (%%s ms) %%s\\n',
                              to_char(timestamp '2026-01-01' + j * interval '1 second', 'HH24:MI:SS'),
                              j, (j * k) % 900, md5(k || 'x' || j)), '')
     FROM generate_series(1, 26) AS j)
  ELSE
    '{"log": "truncated output: ' || (SELECT string_agg(md5(k || 'y' || j), ' ')
                                      FROM generate_series(1, 50) AS j)
  END AS body
FROM generate_series(0, 63) AS k;
"""

SQL_VLOGS = """
INSERT INTO "VerificationLog" ("id", "sessionId", "commitSha", "prDiff", "ciOutput", "verifiedAt")
SELECT md5('vlog' || i)::uuid, md5('session' || i)::uuid,
       CASE WHEN i % 311 = 0 THEN upper(md5('sha' || i) || substr(md5('s2' || i), 1, 8))
            WHEN i % 701 = 0 THEN substr(md5('sha' || i), 1, 7)
            WHEN i % 293 = 0 THEN md5('sha' || i) || md5('s2' || i)
            ELSE md5('sha' || i) || substr(md5('s2' || i), 1, 8) END,
       'diff --git a/src/session_' || i || '.ts b/src/session_' || i || E'.ts\\n' || d.body,
       CASE WHEN i % 10 >= 4 THEN c.body
            ELSE c.body END,
       timestamp '2025-06-01' + i * interval '13 seconds' + interval '2 hours'
FROM generate_series(%(lo)s, %(hi)s - 1) AS i
JOIN _tpl_diff AS d ON d.k = i % 64
JOIN _tpl_ci AS c ON c.k = (i * 7) % 64
"""

SQL_AUDIT = """
INSERT INTO "AuditLog" ("id", "userId", "action", "metadata", "createdAt", "actorId")
SELECT gen_random_uuid(),
       CASE WHEN g % 7 = 0 THEN NULL ELSE md5('user' || (g %% %(users)s))::uuid END,
       (ARRAY['LOGIN', 'LAB_STARTED', 'LAB_STUCK', 'PUSH_RECEIVED', 'VERIFICATION_PASSED',
              'PROFILE_UPDATED', 'LOGOUT', 'ADMIN_VIEW'])[1 + g % 8],
       CASE WHEN g % 5 = 0 THEN NULL
            ELSE jsonb_build_object('ip', '10.' || (g % 250) || '.' || (g % 199) || '.7',
                                    'sessionId', md5('session' || (g %% %(scale)s))::uuid,
                                    'ua', 'Mozilla/5.0 forgea') END,
       timestamp '2025-06-01' + g * interval '1.3 seconds',
       CASE WHEN g % 7 = 0 THEN 'system' ELSE 'user:' || (g %% %(users)s) END
FROM generate_series(%(lo)s, %(hi)s - 1) AS g
"""


def _chunks(total: int, size: int):
    lo = 0
    while lo < total:
        hi = min(total, lo + size)
        yield lo, hi
        lo = hi


def _sql(text: str, **kw) -> str:
    """Substitute integer parameters (%(name)s) and unescape %%: run without bind parameters."""
    for k, v in kw.items():
        text = text.replace(f"%({k})s", str(int(v)))
    return text.replace("%%", "%")


def _connect(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True, application_name="bench-datagen")
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET statement_timeout = 0")
    return conn


def generate(dsn: str, scale: int, log=None) -> dict:
    """Fill a baseline database; returns timings (seconds) per part and in total."""
    scale = int(scale)
    users = users_for(scale)
    params = {"users": users, "labs": LABS, "scale": scale,
              "spare": SPARE_USERS_APP + SPARE_USERS_BENCH}
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    errors: list[BaseException] = []

    with _connect(dsn) as conn:
        t = time.monotonic()
        conn.execute(_sql(SQL_USERS, users=users, spare=params["spare"]))
        conn.execute(_sql(SQL_LABS, labs=LABS))
        timings["users_labs_s"] = time.monotonic() - t

    def audit():
        try:
            with _connect(dsn) as c:
                t1 = time.monotonic()
                total = 10 * scale
                for lo, hi in _chunks(total, AUDIT_CHUNK):
                    c.execute(_sql(SQL_AUDIT, users=users, scale=scale, lo=lo, hi=hi))
                    _log(log, f"datagen: AuditLog {hi}/{total}")
                timings["audit_s"] = time.monotonic() - t1
        except BaseException as e:  # reported by the caller
            errors.append(e)

    th = threading.Thread(target=audit, name="datagen-audit")
    th.start()
    try:
        with _connect(dsn) as conn:
            t = time.monotonic()
            # Data generation standing in for production history: bulk-insert the
            # sessions in their final statuses with the lifecycle guard disabled
            # (owner only), then put the trigger back exactly as it was.
            with conn.transaction():
                conn.execute('ALTER TABLE "LabSession" DISABLE TRIGGER labsession_lifecycle_guard')
                for lo, hi in _chunks(scale, 500_000):
                    conn.execute(_sql(SQL_SESSIONS, users=users, labs=LABS, lo=lo, hi=hi))
                conn.execute('ALTER TABLE "LabSession" ENABLE TRIGGER labsession_lifecycle_guard')
            timings["sessions_s"] = time.monotonic() - t
            _log(log, f"datagen: LabSession {scale} ({timings['sessions_s']:.1f}s)")
            t = time.monotonic()
            conn.execute(_sql(SQL_TEMPLATES))
            for lo, hi in _chunks(scale, 250_000):
                conn.execute(_sql(SQL_VLOGS, lo=lo, hi=hi))
                _log(log, f"datagen: VerificationLog {hi}/{scale}")
            timings["vlogs_s"] = time.monotonic() - t
    finally:
        th.join()
    if errors:
        raise errors[0]
    with _connect(dsn) as conn:
        t = time.monotonic()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - t0
    timings["users"] = users
    return timings
