"""``harness verify``: read-only checks of a live database.

In the spirit of sqitch's verify scripts, every check only reads. All of them
run in ONE transaction opened ``READ ONLY`` (``REPEATABLE READ``, so every check
sees the same snapshot); it is never committed, so even a bug here cannot
write, and the command works on a hot standby. Each check runs in a savepoint:
one check that errors (an object missing on a partly migrated database) is
reported as a failure of that check and the others still run.

Checks (names as printed):

``migration_chain``
    ``harness._harness_migration`` (``public._harness_migration`` on a database
    an earlier harness migrated) against the files under ``sql/`` (harness.chain):
    applied files edited since (drift), applied ids this tree does not know,
    pending files (failure when ``--require-complete``, the default; else info).
``guard_triggers``
    every trigger the applied files create (``CREATE [CONSTRAINT] TRIGGER name
    ... ON "Table" ... EXECUTE FUNCTION fn()``, minus later ``DROP TRIGGER``)
    exists on its table, calls the same function, and fires ALWAYS
    (``tgenabled = 'A'``).  Only a legacy trigger that no applied file switched
    to ALWAYS may still be an origin trigger (info).
``constraints_validated`` / ``indexes_valid``
    no NOT VALID constraint, no INVALID (or not ready) index in ``public``.
``lifecycle_completed_at``, ``lab_version_agreement``,
``one_active_session_per_user_lab``, ``one_active_session_per_repo``,
``job_status_consistency``, ``one_running_job_per_session``,
``job_commit_matches_attempt``, ``job_attempt_results``,
``verified_pass_has_pass_attempt``, ``sha_format``
    rows violating CONTRACT section 4 (ids, first 20, and the count). Sessions
    that were VERIFIED_PASS before the lifecycle migration and rows copied from
    the legacy VerificationLog whose SHA is not hex are reported as info.
``session_identity``
    evidence that a session's identity was changed after its creation (what the
    pack before V0051 let an UPDATE do): its user differs from the user its audit
    rows name, its user/lab no longer match create_lab_session's stored digest,
    its userForkUrl no longer canonicalises to its binding, its startedAt is more
    than a day away from its binding time.
``repo_binding_agreement``
    evidence that a repository id captured another session's pushes (before
    V0053): a push recorded in one session for a URL bound to another session,
    or for a repository id other than the one its binding holds.
``restorable_values``
    values a dump cannot restore (timestamps past year 294276, in any table) or
    the ledger hash cannot tell apart (BC push times); values outside the API
    bounds of V0056 that earlier versions accepted (info).
``lab_attempt_chain``
    ``verify_lab_attempt_chain()`` returns no row.
``role_attributes``, ``ownership``, ``table_privileges``,
``column_privileges``, ``function_privileges``, ``schema_privileges``,
``security_definer``
    the privilege model of CONTRACT section 6, compared with the explicit
    EXPECTED_* tables below: no extra grant to anyone, no missing grant, the
    forbidden privileges absent even through role membership, nothing
    executable by PUBLIC, every SECURITY DEFINER function with a pinned
    ``search_path`` (``pg_catalog`` first, ``pg_temp`` last) and owned by the
    owner of the tables.

Output: a table (check, status, detail) or, with ``--json``,
``{"ok": bool, "checks": [{"name", "status": "pass|fail|info", "findings": [...]}]}``.
Exit code 0 when no check failed, 1 otherwise (4: server unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import chain as chain_mod
from . import ledger, reference
from .bookkeeping import BOOKKEEPING_SCHEMA, HARNESS_TABLE, bookkeeping_schema
from .errors import EXIT_FAILED, EXIT_OK, EXIT_SERVER, EXIT_USAGE, HarnessError

MAX_ROWS = 20

GROUP_ROLES = ("forgea_app", "forgea_worker", "forgea_readonly")
CHECKED_GRANTEES = ("PUBLIC",) + GROUP_ROLES

# --------------------------------------------------------------------------
# the expected privilege model (CONTRACT section 6). Any grant on an object of
# schema public or forgea_archive to anyone but the object's owner that is not
# listed here is a failure, and so is a listed grant that is missing (for the
# objects that exist).

_APP_AUTH = ("SELECT", "INSERT", "UPDATE", "DELETE")
_LEDGER_READS = ("LabVersion", "VerificationAttempt", "GitHubRepoMapping", "LabAttempt",
                 "GitHubPushDelivery", "VerificationJob")
_WORKER_READS = ("Lab", "LabSession") + _LEDGER_READS
#: everything but the secrets (Account/Session/AuthSession columns are granted
#: column by column; VerificationToken not at all)
_READONLY_READS = ("User", "AuthIdentity", "Lab", "LabSession", "VerificationLog",
                   "ResumeBullet", "AuditLog", "LedgerCheckpoint") + _LEDGER_READS

EXPECTED_TABLE_PRIVILEGES: dict[str, dict[str, frozenset[str]]] = {
    "forgea_app": {
        "User": frozenset(_APP_AUTH),
        "Account": frozenset(_APP_AUTH),
        "Session": frozenset(_APP_AUTH),
        "VerificationToken": frozenset(_APP_AUTH),
        "AuthIdentity": frozenset(_APP_AUTH),
        "AuthSession": frozenset(_APP_AUTH),
        "Lab": frozenset({"SELECT", "INSERT", "UPDATE"}),
        # UPDATE only on the columns the app writes: EXPECTED_COLUMN_PRIVILEGES
        "LabSession": frozenset({"SELECT", "INSERT"}),
        # INSERT stays so that the freeze trigger answers FA001 with its reason
        "VerificationLog": frozenset({"SELECT", "INSERT"}),
        "ResumeBullet": frozenset({"SELECT", "INSERT"}),
        "AuditLog": frozenset({"SELECT", "INSERT"}),
        "LabVersion": frozenset({"SELECT"}),
        "VerificationAttempt": frozenset({"SELECT"}),
        "GitHubRepoMapping": frozenset({"SELECT"}),
        "LabAttempt": frozenset({"SELECT"}),
        "GitHubPushDelivery": frozenset({"SELECT"}),
        "VerificationJob": frozenset({"SELECT"}),
    },
    "forgea_worker": dict.fromkeys(_WORKER_READS, frozenset({"SELECT"})),
    "forgea_readonly": dict.fromkeys(_READONLY_READS, frozenset({"SELECT"})),
    "PUBLIC": {},
}

EXPECTED_COLUMN_PRIVILEGES: dict[str, dict[str, dict[str, frozenset[str]]]] = {
    "forgea_app": {
        # what transitionLabSession() writes (Prisma updateMany sends only these)
        "LabSession": {c: frozenset({"UPDATE"}) for c in ("status", "lastActivityAt")},
    },
    "forgea_readonly": {
        "Account": {c: frozenset({"SELECT"}) for c in (
            "id", "userId", "type", "provider", "providerAccountId", "expires_at",
            "token_type", "scope", "session_state")},
        "Session": {c: frozenset({"SELECT"}) for c in ("id", "userId", "expires")},
        "AuthSession": {c: frozenset({"SELECT"}) for c in ("id", "userId", "expires")},
    },
}

#: function name -> roles with EXECUTE (PUBLIC never; every other function of
#: the pack -- trigger functions, internal helpers, procedures -- owner only)
EXPECTED_FUNCTION_EXECUTE: dict[str, frozenset[str]] = {
    "canonical_repo_url": frozenset(GROUP_ROLES),
    "lab_status_is_active": frozenset(GROUP_ROLES),
    "git_branch_name_valid": frozenset(GROUP_ROLES),
    "lab_attempt_row_hash": frozenset({"forgea_readonly", "forgea_worker"}),
    "verify_lab_attempt_chain": frozenset({"forgea_readonly", "forgea_worker"}),
    "list_unmapped_lab_sessions": frozenset({"forgea_app", "forgea_readonly"}),
    "create_lab_session": frozenset({"forgea_app"}),
    "resolve_lab_session": frozenset({"forgea_app", "forgea_worker"}),
    "record_push": frozenset({"forgea_app"}),
    "enqueue_verification_job": frozenset({"forgea_app"}),
    "claim_verification_job": frozenset({"forgea_worker"}),
    "complete_verification_job": frozenset({"forgea_worker"}),
    "requeue_expired_verification_jobs": frozenset({"forgea_worker"}),
}

#: tables no role but the owner may UPDATE, DELETE or TRUNCATE (CONTRACT 6)
APPEND_ONLY_TABLES = ("LabVersion", "VerificationAttempt", "VerificationLog",
                      "LabAttempt", "AuditLog", "ResumeBullet", "GitHubPushDelivery",
                      "LedgerCheckpoint")
#: tables no role but the owner may write at all (API functions only)
API_ONLY_TABLES = ("VerificationJob", "GitHubRepoMapping")
#: secret columns forgea_readonly must not read
SECRET_COLUMNS = {
    "Account": ("refresh_token", "access_token", "id_token"),
    "Session": ("sessionToken",),
    "AuthSession": ("sessionToken",),
    "VerificationToken": ("identifier", "token", "expires"),
}

TERMINAL = ("VERIFIED_PASS", "FAILED")
ACTIVE = ("IN_PROGRESS", "STUCK", "DEFERRED")
SHA_RE = "^[0-9a-f]{40}([0-9a-f]{24})?$"
BOOKKEEPING = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock",
               "_harness_migration", "_prisma_migrations")


# --------------------------------------------------------------------------
# results


@dataclass
class Check:
    name: str
    status: str = "pass"            # pass | fail | info
    findings: list[dict] = field(default_factory=list)

    def fail(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        self._add("fail", obj, message, rows, count)
        self.status = "fail"

    def info(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        self._add("info", obj, message, rows, count)
        if self.status == "pass":
            self.status = "info"

    def _add(self, severity, obj, message, rows, count):
        f = {"severity": severity, "object": obj, "message": message}
        if rows is not None:
            f["rows"] = [str(r) for r in rows[:MAX_ROWS]]
            f["count"] = count if count is not None else len(rows)
        self.findings.append(f)

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "findings": self.findings}


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def by_name(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


# --------------------------------------------------------------------------
# helpers


def _rows(conn, query: str, params=None) -> list[tuple]:
    return conn.execute(query, params or ()).fetchall()


def _exists(conn, rel: str) -> bool:
    return conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                        (f'public."{rel}"',)).fetchone()[0]


def _ids_query(conn, query: str, params=None) -> tuple[list[str], int]:
    """Run ``query`` (first column = an id/description); first 20 and the total."""
    rows = _rows(conn, f"SELECT q.*, count(*) OVER () FROM ({query}) AS q LIMIT {MAX_ROWS}",
                 params)
    if not rows:
        return [], 0
    return [r[0] for r in rows], rows[0][-1]


def _ident(name: str) -> str:
    name = name.strip()
    if name.lower().startswith("public."):
        name = name[7:]
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


# --------------------------------------------------------------------------
# the chain


def _applied_files(conn, files) -> tuple[dict, list]:
    """Recorded migrations by id (with ``state``: 'applied', or 'applying' /
    'rolling_back' for an interrupted no-transaction file), and the applied files."""
    state = {}
    schema = bookkeeping_schema(conn)
    rel = f'{schema}."{HARNESS_TABLE}"'
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (rel,)).fetchone()[0] \
            if schema else False:
        has_state = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
            "to_regclass(%s) AND attname = 'state' AND NOT attisdropped)", (rel,)).fetchone()[0]
        for mid, cs, rcs, adopted, at, st in _rows(
                conn, "SELECT migration_id, checksum, rollback_checksum, adopted, applied_at, "
                      + ("state " if has_state else "'applied' ") + f"FROM {rel}"):
            state[mid] = {"checksum": cs, "rollback_checksum": rcs, "adopted": adopted,
                          "applied_at": at, "state": st}
    applied = [f for f in files if f.id in state and state[f.id]["state"] == "applied"]
    return state, applied


def check_chain(conn, files, state, require_complete: bool) -> Check:
    c = Check("migration_chain")
    if not state:
        c.fail("_harness_migration", "no migration is recorded (missing or empty bookkeeping)")
        return c
    by_id = {f.id: f for f in files}
    drift = [f"{mid} (recorded {rec['checksum'][:12]}..., file {by_id[mid].checksum[:12]}...)"
             for mid, rec in state.items()
             if mid in by_id and rec["checksum"] and rec["checksum"] != by_id[mid].checksum]
    if drift:
        c.fail("_harness_migration", "applied migration files were edited since they were "
               "applied (drift)", drift, len(drift))
    unknown = sorted(mid for mid in state if mid not in by_id)
    if unknown:
        c.fail("_harness_migration", "applied migrations unknown to this tree", unknown)
    pending = [f.id for f in files if f.id not in state]
    if pending:
        (c.fail if require_complete else c.info)(
            "sql/", f"{len(pending)} migration(s) pending", pending, len(pending))
    rb = [mid for mid, rec in state.items() if mid in by_id and rec["rollback_checksum"]
          and rec["rollback_checksum"] != by_id[mid].rollback_checksum]
    if rb:
        c.info("sql/rollback", "rollback files changed since apply", rb)
    adopted = [mid for mid, rec in state.items() if rec["adopted"]]
    if adopted:
        c.info("_harness_migration", "adopted (recorded without running)", adopted)
    incomplete = [f"{mid} ({rec['state']})" for mid, rec in sorted(state.items())
                  if rec.get("state", "applied") != "applied"]
    if incomplete:
        c.fail("_harness_migration", "no-transaction files interrupted half-way "
               "(`harness apply` redoes them, `harness rollback` undoes them)", incomplete)
    return c


# --------------------------------------------------------------------------
# triggers

_CREATE_TRIGGER = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+"
                             r"(\"(?:[^\"]|\"\")+\"|[\w$]+)(.*?);", re.I | re.S)
_ON_TABLE = re.compile(r"\bON\s+((?:public\.)?(?:\"(?:[^\"]|\"\")+\"|[\w$]+))", re.I)
_EXEC_FN = re.compile(r"\bEXECUTE\s+(?:FUNCTION|PROCEDURE)\s+((?:public\.)?[\w$]+)\s*\(", re.I)
_DROP_TRIGGER = re.compile(r"\bDROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?(\"(?:[^\"]|\"\")+\"|[\w$]+)"
                           r"\s+ON\s+((?:public\.)?(?:\"(?:[^\"]|\"\")+\"|[\w$]+))", re.I)
_ENABLE_ALWAYS = re.compile(r"\bENABLE\s+ALWAYS\s+TRIGGER\s+(\"(?:[^\"]|\"\")+\"|[\w$]+)", re.I)


def _strip_comments(text: str) -> str:
    import sqlparse
    return sqlparse.format(text, strip_comments=True)


def expected_triggers(files) -> dict[tuple[str, str], dict]:
    """(table, trigger) -> {"function", "always", "file"} from the files, in order."""
    out: dict[tuple[str, str], dict] = {}
    for f in files:
        text = _strip_comments(f.sql)
        events = []
        for m in _CREATE_TRIGGER.finditer(text):
            events.append((m.start(), "create", m))
        for m in _DROP_TRIGGER.finditer(text):
            events.append((m.start(), "drop", m))
        for m in _ENABLE_ALWAYS.finditer(text):
            events.append((m.start(), "always", m))
        # ENABLE ALWAYS applies to "ALTER TABLE x ENABLE ALWAYS TRIGGER t, ..."
        for pos, kind, m in sorted(events, key=lambda e: e[0]):
            if kind == "create":
                name = _ident(m.group(1))
                rest = m.group(2)
                t = _ON_TABLE.search(rest)
                fn = _EXEC_FN.search(rest)
                if not t:
                    continue
                out[(_ident(t.group(1)), name)] = {
                    "function": _ident(fn.group(1)) if fn else None,
                    "always": False, "file": f.id}
            elif kind == "drop":
                out.pop((_ident(m.group(2)), _ident(m.group(1))), None)
            else:
                name = _ident(m.group(1))
                for key, v in out.items():
                    if key[1] == name:
                        v["always"] = True
    return out


def check_triggers(conn, applied_files) -> Check:
    c = Check("guard_triggers")
    expected = expected_triggers(applied_files)
    live = {(t, n): (en, fn) for t, n, en, fn in _rows(conn, """
        SELECT c.relname, t.tgname, t.tgenabled::text, p.proname
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
        WHERE n.nspname = 'public' AND NOT t.tgisinternal""")}
    modes = {"O": "origin only (ENABLE)", "D": "DISABLED", "R": "replica only", "A": "ALWAYS"}
    for (table, name), exp in sorted(expected.items()):
        obj = f'trigger {name} on "{table}"'
        got = live.get((table, name))
        if got is None:
            c.fail(obj, f"missing (created by {exp['file']})")
            continue
        enabled, fn = got
        if exp["function"] and fn != exp["function"]:
            c.fail(obj, f"calls {fn}() instead of {exp['function']}()")
        if enabled != "A":
            if enabled == "O" and not exp["always"]:
                c.info(obj, "legacy trigger fires in origin mode only (no applied file "
                            "switched it to ENABLE ALWAYS)")
            else:
                c.fail(obj, f"is {modes.get(enabled, enabled)}, must fire ALWAYS "
                            "(tgenabled = 'A')")
    extra = sorted(f'trigger {n} on "{t}"' for (t, n) in live if (t, n) not in expected)
    if extra:
        c.info("public", "triggers not created by the applied migrations", extra)
    return c


# --------------------------------------------------------------------------
# constraints and indexes


def check_constraints(conn) -> Check:
    c = Check("constraints_validated")
    for table, con, kind in _rows(conn, """
        SELECT cl.relname, co.conname, co.contype::text
        FROM pg_catalog.pg_constraint co
        JOIN pg_catalog.pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_catalog.pg_class cl ON cl.oid = co.conrelid
        WHERE n.nspname = 'public' AND NOT co.convalidated
        ORDER BY 1, 2"""):
        c.fail(f'constraint {con} on "{table}"', f"NOT VALID (type {kind}): old rows unchecked")
    return c


def check_indexes(conn) -> Check:
    c = Check("indexes_valid")
    for table, idx, valid, ready in _rows(conn, """
        SELECT t.relname, i.relname, x.indisvalid, x.indisready
        FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
        JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = 'public' AND NOT (x.indisvalid AND x.indisready)
        ORDER BY 1, 2"""):
        c.fail(f'index {idx} on "{table}"',
               "INVALID (an interrupted CREATE INDEX CONCURRENTLY?)" if not valid
               else "not ready")
    return c


# --------------------------------------------------------------------------
# row invariants (CONTRACT section 4)


def _rule(c: Check, conn, obj: str, message: str, query: str, params=None, *, info=False):
    ids, n = _ids_query(conn, query, params)
    if n:
        (c.info if info else c.fail)(obj, message, ids, n)


def _lifecycle_applied_at(conn, state):
    for mid in sorted(state):
        if re.match(r"V\d{4}__lab_session_lifecycle", mid):
            return state[mid]["applied_at"]
    return None


def check_rows(conn, state) -> list[Check]:
    checks = []
    have = {t: _exists(conn, t) for t in (
        "LabSession", "LabVersion", "GitHubRepoMapping", "VerificationJob",
        "VerificationAttempt", "LabAttempt", "VerificationLog", "GitHubPushDelivery")}
    cols = {r[0] for r in _rows(conn, """
        SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = 'public."LabSession"'::regclass AND a.attnum > 0
          AND NOT a.attisdropped""")} if have["LabSession"] else set()

    c = Check("lifecycle_completed_at")
    if "completedAt" in cols:
        _rule(c, conn, '"LabSession"', "completedAt set while active or NULL while terminal",
              """SELECT s."id"::text || ' (' || s."status" || ', completedAt '
                        || coalesce(s."completedAt"::text, 'NULL') || ')'
                 FROM public."LabSession" s
                 WHERE (s."status"::text IN ('VERIFIED_PASS', 'FAILED'))
                       <> (s."completedAt" IS NOT NULL) ORDER BY s."id" """)
    else:
        c.info('"LabSession"', "completedAt not applied yet")
    checks.append(c)

    c = Check("lab_version_agreement")
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
    checks.append(c)

    c = Check("one_active_session_per_user_lab")
    if have["LabSession"]:
        _rule(c, conn, '"LabSession" (userId, labId)', "more than one active session",
              """SELECT s."userId"::text || '/' || s."labId"::text || ': '
                        || string_agg(s."id"::text, ', ' ORDER BY s."id")
                 FROM public."LabSession" s
                 WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
                 GROUP BY s."userId", s."labId" HAVING count(*) > 1 ORDER BY 1""")
    checks.append(c)

    c = Check("one_active_session_per_repo")
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
    checks.append(c)

    job_checks = ["job_status_consistency", "one_running_job_per_session",
                  "job_commit_matches_attempt", "job_attempt_results"]
    if not have["VerificationJob"]:
        for n in job_checks:
            k = Check(n)
            k.info('"VerificationJob"', "not applied yet")
            checks.append(k)
    else:
        c = Check("job_status_consistency")
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
                  "RUNNING jobs claimed without a lease token (before V0052): completable by "
                  "their leaseOwner alone until the lease ends",
                  f"""SELECT j."id"::text || ' (leaseOwner ' || j."leaseOwner" || ')' {J}
                      j."status" = 'RUNNING' AND j."leaseTokenHash" IS NULL ORDER BY j."id" """,
                  info=True)
        checks.append(c)

        c = Check("one_running_job_per_session")
        _rule(c, conn, '"VerificationJob" (sessionId)', "more than one RUNNING job",
              """SELECT j."sessionId"::text || ': ' || string_agg(j."id"::text, ', ')
                 FROM public."VerificationJob" j WHERE j."status" = 'RUNNING'
                 GROUP BY j."sessionId" HAVING count(*) > 1 ORDER BY 1""")
        checks.append(c)

        c = Check("job_commit_matches_attempt")
        _rule(c, conn, '"VerificationJob".commitSha',
              "differs from its LabAttempt's (or session differs / attempt missing)",
              """SELECT j."id"::text FROM public."VerificationJob" j
                 LEFT JOIN public."LabAttempt" a ON a."id" = j."labAttemptId"
                 WHERE a."id" IS NULL OR a."commitSha" <> j."commitSha"
                       OR a."sessionId" <> j."sessionId" ORDER BY 1""")
        checks.append(c)

        c = Check("job_attempt_results")
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
        checks.append(c)

    checks.append(check_session_identity(conn, have))
    checks.append(check_repo_binding_agreement(conn, have))
    checks.append(check_restorable_values(conn, have))

    c = Check("verified_pass_has_pass_attempt")
    if have["VerificationAttempt"] and have["LabSession"]:
        cutoff = _lifecycle_applied_at(conn, state)
        base = """SELECT s."id"::text FROM public."LabSession" s
                  WHERE s."status" = 'VERIFIED_PASS' AND NOT EXISTS (
                    SELECT 1 FROM public."VerificationAttempt" a
                    WHERE a."sessionId" = s."id" AND a."result" = 'PASS')"""
        legacy = ("""(s."completedAt" IS NOT NULL AND %s::timestamptz IS NOT NULL
                      AND s."completedAt" <= timezone('UTC', %s::timestamptz))""")
        _rule(c, conn, '"LabSession" VERIFIED_PASS', "without a PASS VerificationAttempt",
              f"{base} AND NOT {legacy} ORDER BY 1", (cutoff, cutoff))
        _rule(c, conn, '"LabSession" VERIFIED_PASS',
              "legacy sessions passed before the lifecycle migration, kept as they are "
              "(no PASS attempt)", f"{base} AND {legacy} ORDER BY 1", (cutoff, cutoff),
              info=True)
    else:
        c.info('"VerificationAttempt"', "not applied yet")
    checks.append(c)

    c = Check("sha_format")
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
    checks.append(c)
    return checks

#: audit rows that name a session and the session's user at the time they were written
_SESSION_AUDIT = ("LAB_STATUS_TRANSITION", "PUSH_RECORDED", "PUSH_DUPLICATE_DELIVERY",
                  "PUSH_REJECTED")


def check_session_identity(conn, have) -> Check:
    """Evidence that a session's identity changed after it was created (what the pack
    before V0051 let an UPDATE do): its user differs from the user its own audit rows
    name; the arguments digest create_lab_session() stored with its binding no longer
    matches the session's user and lab; its userForkUrl no longer canonicalises to the
    repository it is bound to; its startedAt moved away from the time it was bound."""
    c = Check("session_identity")
    if not have["LabSession"]:
        c.info('"LabSession"', "not applied yet")
        return c
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
    return c


def check_repo_binding_agreement(conn, have) -> Check:
    """Evidence that a repository id captured another session's pushes (what
    record_push before V0053 let through): a push recorded in one session for a URL
    bound to another session, or for a repository id other than its binding's."""
    c = Check("repo_binding_agreement")
    if not (have["GitHubRepoMapping"] and have["LabAttempt"]):
        c.info('"GitHubRepoMapping"', "not applied yet")
        return c
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
    return c


#: the largest timestamp(3) whose text form a restore can read back
_MAX_RESTORABLE = "294276-12-31 23:59:59.999"


def check_restorable_values(conn, have) -> Check:
    """Values an earlier version of the pack (or a direct write) let in that a dump
    cannot restore or the push ledger's hash cannot tell apart: timestamps past the
    restorable maximum (timestamp(3) rounding of '294276-12-31 23:59:59.9999'
    stores 294277-01-01, which pg_dump writes but no restore reads), BC push times
    (the hash layout writes the year without an era), and values outside the bounds
    V0056 puts on the API (info)."""
    c = Check("restorable_values")
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
        ORDER BY 1, 2""", (list(BOOKKEEPING),))
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
              "V0056)",
              """SELECT t."id"::text || ' (' || t."pushedAt"::text || ')'
                 FROM public."LabAttempt" t
                 WHERE t."pushedAt" >= '0001-01-01' AND (t."pushedAt" < '2005-04-07'
                       OR t."pushedAt" > t."createdAt" + interval '1 day') ORDER BY 1""",
              info=True)
    if have["GitHubRepoMapping"]:
        _rule(c, conn, '"GitHubRepoMapping".providerRepoId',
              "above 2^53 - 1 (accepted before V0056; no JSON payload can carry it exactly)",
              """SELECT t."id"::text FROM public."GitHubRepoMapping" t
                 WHERE t."providerRepoId" > 9007199254740991 ORDER BY 1""", info=True)
    if have["VerificationJob"]:
        _rule(c, conn, '"VerificationJob".exitCode',
              "outside -255 .. 255 (accepted before V0056)",
              """SELECT t."id"::text FROM public."VerificationJob" t
                 WHERE t."exitCode" NOT BETWEEN -255 AND 255 ORDER BY 1""", info=True)
    return c


def check_chain_hashes(conn) -> Check:
    c = Check("lab_attempt_chain")
    fn = conn.execute("SELECT to_regprocedure('public.verify_lab_attempt_chain(uuid)')"
                      ).fetchone()[0]
    if fn is None:
        if _exists(conn, "LabAttempt"):
            c.fail("verify_lab_attempt_chain(uuid)", "function missing")
        else:
            c.info('"LabAttempt"', "not applied yet")
        return c
    rows = _rows(conn, "SELECT session_id, chain_seq, lab_attempt_id, problem, detail "
                       "FROM public.verify_lab_attempt_chain(NULL) "
                       "ORDER BY session_id, chain_seq")
    for problem in sorted({r[3] for r in rows}):
        sel = [r for r in rows if r[3] == problem]
        c.fail('"LabAttempt" hash chain', f"{problem} rows (session/seq/id: detail)",
               [f"{r[0]}/{r[1]}/{r[2]}: {r[4]}" for r in sel], len(sel))
    return c


def check_chain_recomputed(conn) -> Check:
    """The chains recomputed in Python from the documented layout (harness.ledger):
    no function of the database is trusted, not even the hash function."""
    c = Check("lab_attempt_chain_recomputed")
    if not _exists(conn, "LabAttempt"):
        c.info('"LabAttempt"', "not applied yet")
        return c
    rec = ledger.recompute(conn)
    for kind in sorted({b.kind for b in rec.breaks}):
        sel = [b for b in rec.breaks if b.kind == kind]
        c.fail('"LabAttempt" hash chain (recomputed)',
               f"{kind}: first broken link per session (session/seq/id: detail)",
               [f"{b.session_id}/{b.chain_seq}/{b.row_id}: {b.detail}" for b in sel],
               len(sel))
    c.info('"LabAttempt"', f"{rec.rows} rows of {rec.sessions} sessions recomputed in "
                           f"{rec.seconds:.2f} s ({rec.rows_per_s:.0f} rows/s)")
    return c


def check_definitions(conn, ref: dict) -> Check:
    """Every object of public as the applied files create it (harness.reference):
    function source and attributes, triggers with their functions, timing, events
    and mode, constraints, indexes, enums, columns and grants. Names alone prove
    nothing: the owner can replace what a name points at."""
    c = Check("definitions")
    if "error" in ref:
        c.fail("reference", f"could not build what the applied files create: {ref['error']}")
        return c
    diffs = reference.differences(ref, reference.snapshot_of(conn))
    for d in diffs:
        head, _, rest = d.partition("\n")
        c.fail(head.split(":", 1)[0], head.split(":", 1)[1].strip() + ("\n" + rest if rest
                                                                        else ""))
    if not diffs:
        c.info("public", f"{len(ref['catalog']['functions'])} functions, "
                         f"{len(ref['catalog']['tables'])} tables and their grants are as "
                         "the applied files create them")
    return c


def build_reference(conn, sql_root: Path | None = None) -> dict:
    """The reference for the files applied on ``conn``'s database, built on a
    throwaway server of the same major; ``{"error": ...}`` when that fails."""
    root = Path(sql_root) if sql_root else chain_mod.default_sql_root()
    files, _ = chain_mod.scan(root)
    _state, applied = _applied_files(conn, files)
    major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    try:
        cache = chain_mod.find_repo_root() / ".harness" / "reference"
    except Exception:
        cache = None
    try:
        return reference.build(major, applied, root, cache)
    except Exception as e:  # binaries missing, server failed: the check says so
        return {"error": f"{type(e).__name__}: {e}".strip()}


def check_against_checkpoint(conn, doc: dict) -> Check:
    """Every session head of a checkpoint kept off the database is still in place."""
    c = Check("checkpoint")
    problems = ledger.check_checkpoint(conn, doc)
    if problems:
        c.fail(f"checkpoint {doc['root'][:16]}", "the live ledger no longer extends it",
               problems, len(problems))
    else:
        c.info(f"checkpoint {doc['root'][:16]}",
               f"{doc['sessionCount']} session heads of {doc['takenAt']} still in place")
    return c


# --------------------------------------------------------------------------
# privileges (CONTRACT section 6)


def _table_owner(conn) -> str | None:
    row = conn.execute("""SELECT pg_catalog.pg_get_userbyid(c.relowner)
                          FROM pg_catalog.pg_class c WHERE c.oid = to_regclass('public."LabSession"')
                       """).fetchone()
    return row[0] if row else None


def check_roles(conn) -> Check:
    c = Check("role_attributes")
    rows = {r[0]: r[1:] for r in _rows(conn, """
        SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin
        FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)""", (list(GROUP_ROLES),))}
    for r in GROUP_ROLES:
        if r not in rows:
            c.fail(r, "role missing")
            continue
        sup, crole, cdb, bypass, login = rows[r]
        bad = [n for n, v in (("SUPERUSER", sup), ("CREATEROLE", crole), ("CREATEDB", cdb),
                              ("BYPASSRLS", bypass), ("LOGIN", login)) if v]
        if bad:
            c.fail(r, "has " + ", ".join(bad) + " (group roles are plain NOLOGIN)")
    for member, group in _rows(conn, """
        SELECT pg_catalog.pg_get_userbyid(m.member), pg_catalog.pg_get_userbyid(m.roleid)
        FROM pg_catalog.pg_auth_members m
        WHERE pg_catalog.pg_get_userbyid(m.member) = ANY(%s)""", (list(GROUP_ROLES),)):
        c.fail(member, f"is a member of {group}: group roles must not inherit other roles")
    return c


def check_ownership(conn, owner) -> Check:
    c = Check("ownership")
    if owner is None:
        c.info("public", "no LabSession table: nothing to compare")
        return c
    others = [f"{k} {n} (owner {o})" for k, n, o in _rows(conn, """
        SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence'
                              WHEN 'm' THEN 'matview' ELSE c.relkind::text END,
               c.relname, pg_catalog.pg_get_userbyid(c.relowner)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND pg_catalog.pg_get_userbyid(c.relowner) <> %s ORDER BY 2""", (owner,))]
    others += [f"function {n} (owner {o})" for n, o in _rows(conn, """
        SELECT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner)
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_catalog.pg_get_userbyid(p.proowner) <> %s
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = p.oid
                          AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e')
        ORDER BY 1""", (owner,))]
    if others:
        c.fail("public", f"objects not owned by the table owner {owner}", others, len(others))
    return c


def _grantee_sql(col: str) -> str:
    return f"CASE WHEN {col} = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid({col}) END"


def check_table_privileges(conn, owner) -> Check:
    c = Check("table_privileges")
    rows = _rows(conn, f"""
        SELECT n.nspname, c.relname, {_grantee_sql('a.grantee')}, a.privilege_type
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE n.nspname IN ('public', 'forgea_archive', %s)
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND a.grantee <> c.relowner""", (BOOKKEEPING_SCHEMA,))
    actual: dict[tuple[str, str], set[str]] = {}
    for nsp, rel, grantee, priv in rows:
        name = rel if nsp == "public" else f"{nsp}.{rel}"
        actual.setdefault((grantee, name), set()).add(priv)
    present = {r[0] for r in _rows(conn, """
        SELECT c.relname FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')""")}
    for (grantee, rel), privs in sorted(actual.items()):
        allowed = EXPECTED_TABLE_PRIVILEGES.get(grantee, {}).get(rel, frozenset())
        extra = sorted(privs - allowed)
        if extra:
            c.fail(f'"{rel}" to {grantee}', "extra grant: " + ", ".join(extra))
    for grantee, tables in EXPECTED_TABLE_PRIVILEGES.items():
        for rel, privs in tables.items():
            if rel not in present:
                continue
            missing = sorted(privs - actual.get((grantee, rel), set()))
            if missing:
                c.fail(f'"{rel}" to {grantee}', "missing grant: " + ", ".join(missing))
    # effective privileges (through PUBLIC and role membership as well)
    for role in GROUP_ROLES:
        for rel in APPEND_ONLY_TABLES + API_ONLY_TABLES:
            if rel not in present:
                continue
            ops = ("UPDATE", "DELETE", "TRUNCATE") + (("INSERT",) if rel in API_ONLY_TABLES
                                                      else ())
            for op in ops:
                if conn.execute("SELECT pg_catalog.has_table_privilege(%s, %s, %s)",
                                (role, f'public."{rel}"', op)).fetchone()[0]:
                    c.fail(f'"{rel}"', f"{role} can {op} it (effective privilege)")
    return c


def check_column_privileges(conn) -> Check:
    c = Check("column_privileges")
    rows = _rows(conn, f"""
        SELECT c.relname, a.attname, {_grantee_sql('x.grantee')}, x.privilege_type
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) x
        WHERE n.nspname IN ('public', 'forgea_archive', %s) AND a.attnum > 0
          AND NOT a.attisdropped AND x.grantee <> c.relowner""", (BOOKKEEPING_SCHEMA,))
    actual: dict[tuple[str, str, str], set[str]] = {}
    for rel, col, grantee, priv in rows:
        actual.setdefault((grantee, rel, col), set()).add(priv)
    for (grantee, rel, col), privs in sorted(actual.items()):
        allowed = EXPECTED_COLUMN_PRIVILEGES.get(grantee, {}).get(rel, {}).get(col, frozenset())
        extra = sorted(privs - allowed)
        if extra:
            c.fail(f'"{rel}"."{col}" to {grantee}', "extra column grant: " + ", ".join(extra))
    for grantee, tables in EXPECTED_COLUMN_PRIVILEGES.items():
        for rel, cols in tables.items():
            if not _exists(conn, rel):
                continue
            for col, privs in cols.items():
                missing = sorted(privs - actual.get((grantee, rel, col), set()))
                if missing:
                    c.fail(f'"{rel}"."{col}" to {grantee}',
                           "missing column grant: " + ", ".join(missing))
    for rel, secret in SECRET_COLUMNS.items():
        if not _exists(conn, rel):
            continue
        for col in secret:
            if conn.execute("SELECT pg_catalog.has_column_privilege('forgea_readonly', %s, %s, "
                            "'SELECT')", (f'public."{rel}"', col)).fetchone()[0]:
                c.fail(f'"{rel}"."{col}"', "forgea_readonly can read this secret")
    return c


def check_function_privileges(conn) -> Check:
    c = Check("function_privileges")
    rows = _rows(conn, f"""
        SELECT p.proname, p.oid::regprocedure::text, {_grantee_sql('a.grantee')}
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(
            coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
        WHERE n.nspname IN ('public', 'forgea_archive') AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = p.oid
                          AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e')""")
    actual: dict[tuple[str, str], set[str]] = {}
    for name, sig, grantee in rows:
        actual.setdefault((name, sig), set()).add(grantee)
        if grantee not in EXPECTED_FUNCTION_EXECUTE.get(name, frozenset()):
            c.fail(f"function {sig}", f"EXECUTE granted to {grantee}"
                   + (" (executable by everyone)" if grantee == "PUBLIC" else ""))
    sigs = {r[0]: r[1] for r in _rows(conn, """
        SELECT p.proname, p.oid::regprocedure::text FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname = ANY(%s)""",
                                      (list(EXPECTED_FUNCTION_EXECUTE),))}
    for name, roles in EXPECTED_FUNCTION_EXECUTE.items():
        if name not in sigs:
            continue
        got = actual.get((name, sigs[name]), set())
        missing = sorted(roles - got)
        if missing:
            c.fail(f"function {sigs[name]}", "missing EXECUTE for " + ", ".join(missing))
    return c


def check_schema_privileges(conn) -> Check:
    c = Check("schema_privileges")
    for nsp, grantee, priv in _rows(conn, f"""
        SELECT n.nspname, {_grantee_sql('a.grantee')}, a.privilege_type
        FROM pg_catalog.pg_namespace n
        CROSS JOIN LATERAL pg_catalog.aclexplode(
            coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
        WHERE n.nspname IN ('public', 'forgea_archive', %s) AND a.grantee <> n.nspowner
        ORDER BY 1, 2, 3""", (BOOKKEEPING_SCHEMA,)):
        # the rollback archive and the harness's bookkeeping are the owner's alone
        if priv == "CREATE" or nsp in ("forgea_archive", BOOKKEEPING_SCHEMA):
            c.fail(f"schema {nsp}", f"{priv} granted to {grantee}")
    for role in ("public",) + GROUP_ROLES:
        who = "PUBLIC" if role == "public" else role
        if role == "public":
            q = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database d CROSS JOIN LATERAL "
                 "pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', "
                 "d.datdba))) a WHERE d.datname = current_database() AND a.grantee = 0 "
                 "AND a.privilege_type = 'CREATE')")
            has = conn.execute(q).fetchone()[0]
        else:
            has = conn.execute("SELECT pg_catalog.has_database_privilege(%s, "
                               "current_database(), 'CREATE')", (role,)).fetchone()[0]
        if has:
            c.fail(f"database {conn.info.dbname}", f"{who} can CREATE schemas")
    for role in GROUP_ROLES:
        if conn.execute("SELECT pg_catalog.has_schema_privilege(%s, 'public', 'CREATE')",
                        (role,)).fetchone()[0]:
            c.fail("schema public", f"{role} can CREATE objects (effective privilege)")
        if conn.execute("SELECT to_regnamespace(%s) IS NOT NULL AND "
                        "pg_catalog.has_schema_privilege(%s, %s, 'USAGE')",
                        (BOOKKEEPING_SCHEMA, role, BOOKKEEPING_SCHEMA)).fetchone()[0]:
            c.fail(f"schema {BOOKKEEPING_SCHEMA}",
                   f"{role} can use the harness's bookkeeping schema (effective privilege)")
    return c


def check_security_definer(conn, owner) -> Check:
    c = Check("security_definer")
    for sig, fowner, config in _rows(conn, """
        SELECT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner), p.proconfig
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'forgea_archive') AND p.prosecdef ORDER BY 1"""):
        path = None
        for item in config or []:
            if item.startswith("search_path="):
                path = [s.strip().strip('"') for s in item.split("=", 1)[1].split(",")]
        obj = f"function {sig}"
        if path is None:
            c.fail(obj, "SECURITY DEFINER without a pinned search_path (proconfig)")
        else:
            if path[0] != "pg_catalog":
                c.fail(obj, f"search_path {', '.join(path)} does not start with pg_catalog")
            if path[-1] != "pg_temp":
                c.fail(obj, f"search_path {', '.join(path)} does not end with pg_temp "
                            "(pg_temp is otherwise searched first for relations)")
            bad = [s for s in path if s not in ("pg_catalog", "public", "pg_temp")]
            if bad:
                c.fail(obj, "search_path names other schemas: " + ", ".join(bad))
        if owner and fowner != owner:
            c.fail(obj, f"owned by {fowner}, not by the table owner {owner}")
    return c


# --------------------------------------------------------------------------
# driver


def run_checks(conn: psycopg.Connection, sql_root: Path | None = None,
               require_complete: bool = True, checkpoint: dict | None = None,
               reference_snapshot: dict | None = None) -> Report:
    """All checks through ``conn`` (not in a transaction yet), in one READ ONLY one."""
    root = Path(sql_root) if sql_root else chain_mod.default_sql_root()
    files, problems = chain_mod.scan(root)
    checks: list[Check] = []
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL search_path = pg_catalog, public")
        conn.execute("SET LOCAL statement_timeout = '10min'")

        def guarded(name: str, fn, *args):
            try:
                with conn.transaction():  # savepoint: one broken check does not stop the rest
                    res = fn(*args)
            except psycopg.Error as e:
                k = Check(name)
                k.fail(name, f"check errored: SQLSTATE {e.sqlstate}: "
                             f"{(e.diag.message_primary or str(e)).strip()}")
                checks.append(k)
                return
            checks.extend(res if isinstance(res, list) else [res])

        state, applied = _applied_files(conn, files)
        chk = check_chain(conn, files, state, require_complete)
        for p in problems:
            chk.fail(p.file, f"{p.rule}: {p.message}")
        checks.append(chk)
        owner = _table_owner(conn)
        guarded("guard_triggers", check_triggers, conn, applied)
        guarded("constraints_validated", check_constraints, conn)
        guarded("indexes_valid", check_indexes, conn)
        guarded("row_invariants", check_rows, conn, state)
        guarded("lab_attempt_chain", check_chain_hashes, conn)
        guarded("lab_attempt_chain_recomputed", check_chain_recomputed, conn)
        if checkpoint is not None:
            guarded("checkpoint", check_against_checkpoint, conn, checkpoint)
        if reference_snapshot is not None:
            guarded("definitions", check_definitions, conn, reference_snapshot)
        guarded("role_attributes", check_roles, conn)
        guarded("ownership", check_ownership, conn, owner)
        guarded("table_privileges", check_table_privileges, conn, owner)
        guarded("column_privileges", check_column_privileges, conn)
        guarded("function_privileges", check_function_privileges, conn)
        guarded("schema_privileges", check_schema_privileges, conn)
        guarded("security_definer", check_security_definer, conn, owner)
    finally:
        conn.rollback()   # never commit: nothing here writes, and nothing could
        conn.autocommit = was_autocommit
    return Report(checks)


def verify(dsn: str, *, sql_root: Path | None = None, require_complete: bool = True,
           checkpoint: dict | None = None, reference_snapshot: dict | str | None = None
           ) -> Report:
    """``reference_snapshot``: a snapshot (harness.reference), "build" to build one
    for the applied files, or None to skip the definitions check."""
    with psycopg.connect(dsn, autocommit=True, application_name="harness-verify") as conn:
        if reference_snapshot == "build":
            reference_snapshot = build_reference(conn, sql_root)
        return run_checks(conn, sql_root=sql_root, require_complete=require_complete,
                          checkpoint=checkpoint, reference_snapshot=reference_snapshot)


def render_table(report: Report) -> str:
    lines = []
    w = max(len(c.name) for c in report.checks) if report.checks else 10
    lines.append(f"{'check'.ljust(w)}  status  detail")
    lines.append(f"{'-' * w}  ------  {'-' * 40}")
    for c in report.checks:
        if not c.findings:
            lines.append(f"{c.name.ljust(w)}  {c.status.upper():6}  ok")
            continue
        first = True
        for f in c.findings:
            head = f"{c.name.ljust(w)}  {c.status.upper():6}" if first else " " * (w + 8)
            first = False
            detail = f"[{f['severity']}] {f['object']}: {f['message']}"
            if "rows" in f:
                more = f" (+{f['count'] - len(f['rows'])} more)" if f["count"] > len(f["rows"]) \
                    else ""
                detail += f" [{f['count']}] " + ", ".join(f["rows"]) + more
            lines.append(f"{head}  {detail}")
    n_fail = len(report.failed())
    lines.append("")
    lines.append("verify: OK" if report.ok else f"verify: FAILED ({n_fail} check(s): "
                 + ", ".join(report.failed()) + ")")
    return "\n".join(lines)


def run(dsn: str, json_output: bool = False, *, sql_root: Path | None = None,
        require_complete: bool = True, checkpoint: dict | None = None,
        reference_snapshot: dict | str | None = "build", out=None) -> int:
    """Run every check against ``dsn``, print the result; return the exit code."""
    out = out or sys.stdout
    try:
        report = verify(dsn, sql_root=sql_root, require_complete=require_complete,
                        checkpoint=checkpoint, reference_snapshot=reference_snapshot)
    except psycopg.OperationalError as e:
        print(f"harness verify: cannot reach the database: {str(e).strip()}", file=sys.stderr)
        return EXIT_SERVER
    if json_output:
        out.write(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    else:
        out.write(render_table(report) + "\n")
    return EXIT_OK if report.ok else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point used by ``harness verify`` (cli._delegate passes the raw args)."""
    p = argparse.ArgumentParser(prog="harness verify",
                                description="Read-only checks of a live database.")
    p.add_argument("--target", metavar="DSN", help="libpq DSN/URI (default: embedded server)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sql-root", type=Path, default=None,
                   help="sql/ tree to compare with (default: $HARNESS_SQL_ROOT or the repo's)")
    p.add_argument("--checkpoint", metavar="FILE", type=Path, default=None,
                   help="also check that the live ledger still extends this checkpoint "
                        "(written earlier by `harness checkpoint`)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip comparing every definition with what the applied files create "
                        "(built on a throwaway server of the same major)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--require-complete", dest="require_complete", action="store_true",
                   default=True, help="pending migrations are a failure (default)")
    g.add_argument("--no-require-complete", dest="require_complete", action="store_false",
                   help="pending migrations are only reported")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    sql_root = args.sql_root or (Path(os.environ["HARNESS_SQL_ROOT"])
                                 if os.environ.get("HARNESS_SQL_ROOT") else None)
    try:
        doc = ledger.load(args.checkpoint) if args.checkpoint else None
    except (OSError, ValueError, ledger.CheckpointError) as e:
        print(f"harness verify: cannot use the checkpoint: {e}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if args.target:
            dsn = args.target
        else:
            from .cli import resolve_target
            dsn = resolve_target(None)
        return run(dsn, args.json, sql_root=sql_root, require_complete=args.require_complete,
                   checkpoint=doc, reference_snapshot=None if args.no_reference else "build")
    except HarnessError as e:
        print(f"harness verify: {e.render()}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
