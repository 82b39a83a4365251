"""A small production-like dataset for a database at the baseline (V0002).

``seed_production_like(conn)`` writes, as the owner and through plain INSERTs
(plus the legal UPDATEs of the legacy lifecycle), the kind of rows the Prisma
app has written in production: users, OAuth accounts, auth sessions, labs,
sessions in every legacy status, VerificationLog rows with hostile ciOutput /
prDiff texts, audit rows and resume bullets.  Everything is deterministic
(``tests.helpers.ids``, fixed timestamps), so two seeded databases are equal.

``snapshot_rows(conn)`` returns every row of every baseline table, restricted
to the baseline columns (so it can be compared before and after the migration
adds columns), in a stable order.

The returned dict (``seed``) has:
  users, labs, accounts, audit, bullets       lists of ids
  sessions                                    {status: [session ids]} (legacy status)
  session_status                              {session id: legacy status}
  session_user_lab                            {session id: (user id, lab id)}
  session_last_activity                       {session id: lastActivityAt}
  logs                                        {kind: log id}
  log_session                                 {kind: session id}
  log_rows                                    {kind: dict(ciOutput, prDiff, commitSha,
                                               verifiedAt, status, ci_format, diff_format)}
  free_pairs                                  (user id, lab id) pairs with no active session
"""

from __future__ import annotations

import datetime as dt
import hashlib

from psycopg import sql
from psycopg.types.json import Jsonb

from tests.builders import ids, sha

BASE_TIME = dt.datetime(2026, 1, 25, 9, 0, 0)

# Baseline tables and their columns (CONTRACT section 3), in a stable order.
BASELINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "User": ("id", "githubId", "email", "role", "icprScore", "createdAt", "updatedAt"),
    "Account": ("id", "userId", "type", "provider", "providerAccountId", "refresh_token",
                "access_token", "expires_at", "token_type", "scope", "id_token",
                "session_state"),
    "Session": ("id", "sessionToken", "userId", "expires"),
    "VerificationToken": ("identifier", "token", "expires"),
    "AuthIdentity": ("id", "userId", "provider", "providerUserId"),
    "AuthSession": ("id", "sessionToken", "userId", "expires"),
    "Lab": ("id", "title", "epic", "failureClass", "sourceGithubIssueUrl", "repoVersion",
            "baseRepoUrl", "constraints"),
    "LabSession": ("id", "userId", "labId", "status", "userForkUrl", "previewUrl",
                   "startedAt", "lastActivityAt"),
    "VerificationLog": ("id", "sessionId", "commitSha", "prDiff", "ciOutput", "verifiedAt"),
    "ResumeBullet": ("id", "sessionId", "bulletText", "atsKeywords"),
    "AuditLog": ("id", "userId", "action", "metadata", "createdAt", "actorId"),
}
BASELINE_TABLES = tuple(BASELINE_COLUMNS)

N_USERS = 4
N_LABS = 5

# --------------------------------------------------------------------- hostile texts


def _huge_text() -> str:
    """About 2 MB of CI output, deterministic, with a non-ASCII tail."""
    line = "[ci] step {:06d}: npm test -- --runInBand ... ok ({:d} ms)\n"
    parts = []
    size = 0
    i = 0
    while size < 2 * 1024 * 1024:
        s = line.format(i, (i * 37) % 1000)
        parts.append(s)
        size += len(s)
        i += 1
    parts.append("done ✓ 完了\n")
    return "".join(parts)


HUGE_TEXT = _huge_text()

# kind -> (text, expected format in VerificationAttempt.logs: "json" | "text")
LOG_TEXTS: dict[str, tuple[str, str]] = {
    "json_object": ('{"tests": {"passed": 12, "failed": 0}, "suite": "leak-check",'
                    ' "notes": ["ok", null, 1.50]}', "json"),
    "json_array": ('[{"step": "build", "ok": true}, {"step": "test", "ok": false}, 3]', "json"),
    "json_number": ("-3.5e2", "json"),
    "json_string": ('"just a quoted string"', "json"),
    "json_true": ("true", "json"),
    "json_null": ("null", "json"),
    "looks_like_json": ('{"a": 1', "text"),
    "digits_prefix_text": ("404 Not Found: preview deployment missing", "text"),
    "nul_escape_json": ('{"stdout": "before\\u0000after", "code": 0}', "text"),
    "huge_text": (HUGE_TEXT, "text"),
    "non_ascii": ("✅ テスト通過 — 测试通过 — שלום עולם — مرحبا 🚀👩🏽‍💻 Ünïcödé", "text"),
    "control_chars": ("\x1b[31mFAIL\x1b[0m\tline1\r\nline2\x01\x02\x07\x08\x0b\x0c\x1f\x7f end",
                      "text"),
    "plain_diff": ("diff --git a/src/leak.ts b/src/leak.ts\n--- a/src/leak.ts\n"
                   "+++ b/src/leak.ts\n@@ -1,3 +1,4 @@\n+clearInterval(timer);\n", "text"),
    "nonhex_sha": ("legacy pipeline output (sha was a build label)", "text"),
    "upper_sha": ("legacy pipeline output (uppercase sha)", "text"),
}
LOG_KINDS = tuple(LOG_TEXTS)

NONHEX_SHA = "build-2026.01.27#42"
UPPER_SHA = hashlib.sha1(b"forgea-upper").hexdigest().upper()


def _ms(t: dt.datetime) -> dt.datetime:
    return t.replace(microsecond=(t.microsecond // 1000) * 1000)


def _t(minutes: float) -> dt.datetime:
    return _ms(BASE_TIME + dt.timedelta(minutes=minutes))


def _uid(prefix: int, n: int):
    return ids._make(prefix, n)  # same scheme as tests.helpers.ids


# --------------------------------------------------------------------- seeding


def seed_production_like(conn) -> dict:
    """Insert the dataset (as the connection's role, normally the owner); return the ids."""
    seed: dict = {
        "users": [], "labs": [], "accounts": [], "audit": [], "bullets": [],
        "sessions": {s: [] for s in ("IN_PROGRESS", "STUCK", "VERIFIED_PASS", "DEFERRED")},
        "session_status": {}, "session_user_lab": {}, "session_last_activity": {},
        "logs": {}, "log_session": {}, "log_rows": {},
    }
    with conn.transaction():
        cur = conn.cursor()
        # users -----------------------------------------------------------
        roles = ["USER", "ADMIN", "RECRUITER", "USER"]
        for n in range(1, N_USERS + 1):
            uid = ids.user(n)
            cur.execute(
                'INSERT INTO "User" ("id", "githubId", "email", "role", "icprScore",'
                ' "createdAt", "updatedAt") VALUES (%s, %s, %s, %s, %s, %s, %s)',
                (uid, None if n == 3 else f"gh-{1000 + n}", f"user{n}@example.com",
                 roles[n - 1], n * 17, _t(-1000 + n), _t(-500 + n)))
            seed["users"].append(uid)
        # auth tables -----------------------------------------------------
        for n in range(1, N_USERS + 1):
            aid = f"acc_{n:04d}"
            cur.execute(
                'INSERT INTO "Account" ("id", "userId", "type", "provider", "providerAccountId",'
                ' "refresh_token", "access_token", "expires_at", "token_type", "scope",'
                ' "id_token", "session_state") VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)',
                (aid, ids.user(n), "oauth", "github" if n % 2 else "google", f"prov-{n}",
                 f"ghr_refresh_secret_{n}", f"gho_access_secret_{n}", 1769400000 + n,
                 "bearer", "read:user user:email", f"eyJ.idtoken.{n}" if n % 2 == 0 else None,
                 None))
            seed["accounts"].append(aid)
            cur.execute('INSERT INTO "Session" ("id", "sessionToken", "userId", "expires")'
                        " VALUES (%s, %s, %s, %s)",
                        (f"sess_{n:04d}", f"session-token-{n}", ids.user(n), _t(60 * 24 * 30)))
            cur.execute('INSERT INTO "AuthIdentity" ("id", "userId", "provider", "providerUserId")'
                        " VALUES (%s, %s, %s, %s)",
                        (_uid(7, n), ids.user(n), ["EMAIL", "GOOGLE", "GITHUB"][n % 3],
                         f"provider-user-{n}"))
            cur.execute('INSERT INTO "AuthSession" ("id", "sessionToken", "userId", "expires")'
                        " VALUES (%s, %s, %s, %s)",
                        (_uid(8, n), f"auth-session-token-{n}", ids.user(n), _t(60 * 24 * 7)))
        cur.execute('INSERT INTO "VerificationToken" ("identifier", "token", "expires")'
                    " VALUES (%s, %s, %s), (%s, %s, %s)",
                    ("user1@example.com", "vt-1", _t(60), "user2@example.com", "vt-2", _t(90)))
        # labs ------------------------------------------------------------
        classes = ["RESOURCE_LEAK", "STATE_CORRUPTION", "RENDERING_FAILURE",
                   "SECURITY_EXPOSURE", "DATA_INTEGRITY"]
        for n in range(1, N_LABS + 1):
            lid = ids.lab(n)
            cur.execute(
                'INSERT INTO "Lab" ("id", "title", "epic", "failureClass", "sourceGithubIssueUrl",'
                ' "repoVersion", "baseRepoUrl", "constraints") VALUES (%s,%s,%s,%s,%s,%s,%s,%s)',
                (lid, f"Lab {n}: {classes[n - 1].lower().replace('_', ' ')}",
                 f"epic-{(n + 1) // 2}", classes[n - 1],
                 f"https://github.com/forgea/labs/issues/{n}", f"v1.{n}.0",
                 f"https://github.com/forgea/lab-{n}",
                 Jsonb({"maxMinutes": 30 * n, "allowed": ["src/**"], "lang": "ts",
                        "note": "überprüfen ✓" if n == 2 else None})))
            seed["labs"].append(lid)

        # sessions --------------------------------------------------------
        active_pairs = set()
        counter = [0]

        def new_session(user, lab, status, *, fork=None):
            counter[0] += 1
            n = counter[0]
            sid = ids.session(n)
            started = _t(n * 10)
            last = _t(n * 10 + 7)
            cur.execute(
                'INSERT INTO "LabSession" ("id", "userId", "labId", "status", "userForkUrl",'
                ' "previewUrl", "startedAt", "lastActivityAt")'
                " VALUES (%s, %s, %s, 'IN_PROGRESS', %s, %s, %s, %s)",
                (sid, user, lab, fork or f"https://github.com/user{user.int % 1000}/lab-fork-{n}",
                 None if n % 3 == 0 else f"https://preview-{n}.forgea.dev", started, last))
            # legal legacy moves only
            path = {"IN_PROGRESS": [], "STUCK": ["STUCK"], "DEFERRED": ["DEFERRED"],
                    "VERIFIED_PASS": ["STUCK", "VERIFIED_PASS"] if n % 2 else ["VERIFIED_PASS"]}
            for step in path[status]:
                cur.execute('UPDATE "LabSession" SET "status" = %s WHERE "id" = %s', (step, sid))
            if status in ("IN_PROGRESS", "STUCK", "DEFERRED"):
                assert (user, lab) not in active_pairs
                active_pairs.add((user, lab))
            seed["sessions"][status].append(sid)
            seed["session_status"][sid] = status
            seed["session_user_lab"][sid] = (user, lab)
            seed["session_last_activity"][sid] = last
            return sid, last

        # sessions without a log: every status, including a STUCK -> IN_PROGRESS round trip
        new_session(ids.user(1), ids.lab(1), "IN_PROGRESS")
        new_session(ids.user(1), ids.lab(2), "STUCK")
        new_session(ids.user(1), ids.lab(3), "DEFERRED")
        sid, _ = new_session(ids.user(3), ids.lab(5), "STUCK")
        cur.execute('UPDATE "LabSession" SET "status" = \'IN_PROGRESS\' WHERE "id" = %s', (sid,))
        seed["sessions"]["STUCK"].remove(sid)
        seed["sessions"]["IN_PROGRESS"].append(sid)
        seed["session_status"][sid] = "IN_PROGRESS"
        sid_nolog_pass, _ = new_session(ids.user(1), ids.lab(1), "VERIFIED_PASS")
        seed["pass_without_log"] = sid_nolog_pass

        # one session per log kind; even kinds passed, odd ones still active
        active_cycle = ["IN_PROGRESS", "STUCK", "DEFERRED"]
        free = [(ids.user(u), ids.lab(lb)) for u in range(2, N_USERS + 1)
                for lb in range(1, N_LABS + 1)]
        free = [p for p in free if p not in active_pairs]
        for i, kind in enumerate(LOG_KINDS):
            if i % 2 == 0:
                status = "VERIFIED_PASS"
                user, lab = ids.user(1 + i % N_USERS), ids.lab(1 + i % N_LABS)
            else:
                status = active_cycle[(i // 2) % 3]
                user, lab = free.pop(0)
            sid, last = new_session(user, lab, status)
            ci, ci_fmt = LOG_TEXTS[kind]
            diff_kind = LOG_KINDS[(i + 1) % len(LOG_KINDS)]
            diff, diff_fmt = LOG_TEXTS[diff_kind]
            commit = {"nonhex_sha": NONHEX_SHA, "upper_sha": UPPER_SHA}.get(kind, sha(0xC0FFEE00 + i))
            verified = _ms(last + dt.timedelta(minutes=30, milliseconds=123 + i))
            lid = ids.log(i + 1)
            cur.execute(
                'INSERT INTO "VerificationLog" ("id", "sessionId", "commitSha", "prDiff",'
                ' "ciOutput", "verifiedAt") VALUES (%s, %s, %s, %s, %s, %s)',
                (lid, sid, commit, diff, ci, verified))
            seed["logs"][kind] = lid
            seed["log_session"][kind] = sid
            seed["log_rows"][kind] = {
                "ciOutput": ci, "prDiff": diff, "commitSha": commit, "verifiedAt": verified,
                "status": status, "ci_format": ci_fmt, "diff_format": diff_fmt,
            }

        # resume bullets for passed sessions --------------------------------
        for n, sid in enumerate(seed["sessions"]["VERIFIED_PASS"][:4], start=1):
            bid = _uid(6, n)
            cur.execute('INSERT INTO "ResumeBullet" ("id", "sessionId", "bulletText", "atsKeywords")'
                        " VALUES (%s, %s, %s, %s)",
                        (bid, sid, f"Fixed a production {['leak', 'race', 'XSS', 'N+1'][n - 1]} "
                         "under CI verification — 修复",
                         None if n == 4 else ["TypeScript", "PostgreSQL", f"kw{n}"]))
            seed["bullets"].append(bid)

        # audit rows ----------------------------------------------------------
        audits = [
            (ids.user(1), "lab.session.started", {"sessionId": str(ids.session(1)), "ip": "203.0.113.7"}, "user:1"),
            (ids.user(2), "lab.verification.recorded", {"result": "pass", "bytes": 2097152}, "user:2"),
            (None, "system.cron.cleanup", {"deleted": 0, "note": "nächtlich 🌙"}, "system"),
            (None, "admin.lab.updated", None, "admin:ops"),
            (ids.user(3), "auth.login", {"provider": "github", "nested": {"a": [1, 2, {"b": None}]}},
             "user:3"),
        ]
        for n, (uid, action, meta, actor) in enumerate(audits, start=1):
            aid = ids.audit(n)
            cur.execute('INSERT INTO "AuditLog" ("id", "userId", "action", "metadata",'
                        ' "createdAt", "actorId") VALUES (%s, %s, %s, %s, %s, %s)',
                        (aid, uid, action, None if meta is None else Jsonb(meta), _t(400 + n), actor))
            seed["audit"].append(aid)

        seed["free_pairs"] = [p for p in free if p not in active_pairs]
    return seed


# --------------------------------------------------------------------- snapshots


def snapshot_rows(conn, tables=BASELINE_TABLES) -> dict[str, list[tuple]]:
    """Every row of every baseline table (baseline columns only), in a stable order."""
    out: dict[str, list[tuple]] = {}
    for table in tables:
        cols = BASELINE_COLUMNS[table]
        col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        order = (sql.SQL('"token"') if table == "VerificationToken"
                 else sql.SQL('"id"'))
        rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            col_list, sql.Identifier(table), order)).fetchall()
        out[table] = [tuple(r) for r in rows]
    return out
