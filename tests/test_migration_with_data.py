"""A production-like database at the baseline migrates, pre-flights, and rolls back with data.

``baseline_db`` (V0001..V0002) is seeded by tests.prodlike, then the rest of the
chain is applied as the owner through the harness (``migrated``: a clone of a
template built that way once per module).
"""

from __future__ import annotations

import copy
import hashlib
import os
import uuid

import psycopg
import pytest

from harness import apply as happly
from harness import catalog
from harness.errors import HarnessError
from tests.conftest import OWNER, _build_template, _fresh_db
from tests.builders import (
    add_user_and_labs, claim_and_complete, create_session, ids, push_head_job, session_row,
    sha,
)
from tests.helpers import raises_sqlstate
from tests.prodlike import (
    HUGE_TEXT,
    LOG_KINDS,
    NONHEX_SHA,
    UPPER_SHA,
    seed_production_like,
    snapshot_rows,
)

BASELINE = "V0002__roles_and_archive"


def _applied(dsn, sql_root):
    return [a["id"] for a in happly.status(dsn, sql_root=sql_root)["applied"]]


def _harness_error(fn, sqlstate):
    """Run ``fn``; it must raise a harness error carrying ``sqlstate``; return its text."""
    with pytest.raises(HarnessError) as excinfo:
        fn()
    err = excinfo.value
    assert getattr(err, "sqlstate", None) == sqlstate, f"expected {sqlstate}: {err}"
    return str(err)


def _archives(conn):
    return {r[0]: r[1] for r in conn.execute(
        "SELECT c.relname, (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid"
        " AND a.attnum > 0 AND NOT a.attisdropped) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'forgea_archive' AND c.relkind = 'r'")}


def _archive_rows(conn, prefix):
    names = [n for n in _archives(conn) if n.startswith(prefix)]
    assert len(names) == 1, f"archive tables {prefix}*: {names}"
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped", (f'forgea_archive."{names[0]}"',))]
    assert cols == ["row"], cols
    return [r[0] for r in conn.execute(f'SELECT "row" FROM forgea_archive."{names[0]}"')]


class Migrated:
    """A fresh clone of the migrated template, with what was seen while building it."""

    def __init__(self, db, sql_root, facts):
        self.db = db
        self.sql_root = sql_root
        self.dsn = db.dsn("owner")
        self.owner = db.connect("owner")
        self.catalog_base = facts["catalog_base"]
        self.seed = facts["seed"]
        self.rows_before = facts["rows_before"]
        self.catalog_after = facts["catalog_after"]


@pytest.fixture(scope="module")
def migrated_template(pg_cluster, tmpl_baseline, sql_root):
    """The baseline seeded by tests.prodlike (deterministic), then the rest of the chain
    applied as the owner through the harness: built once per module and worker, each
    test gets its own clone. Returns (template name, facts): the catalog before the
    seed, the seed, every baseline row before the migration, the catalog after it."""
    facts = {}

    def prepare(conn):
        facts["catalog_base"] = catalog.snapshot(conn)
        facts["seed"] = seed_production_like(conn)
        facts["rows_before"] = snapshot_rows(conn)

    name = f"tmpl_migrated_{os.getpid()}"
    janitor = _build_template(pg_cluster, name, None, sql_root, source=tmpl_baseline,
                              prepare=prepare)
    try:
        with psycopg.connect(pg_cluster.dsn(user=OWNER, dbname=name), autocommit=True) as conn:
            facts["catalog_after"] = catalog.snapshot(conn)
        yield name, facts
    finally:
        janitor.drop()


@pytest.fixture
def migrated(pg_cluster, migrated_template, sql_root):
    name, facts = migrated_template
    with _fresh_db(pg_cluster, name, "t_mig") as db:
        yield Migrated(db, sql_root, copy.deepcopy(facts))


# ------------------------------------------------------------------ forward migration


def test_every_original_row_is_intact_after_the_migration(migrated):
    assert snapshot_rows(migrated.owner) == migrated.rows_before


def test_one_attempt_per_verification_log_with_the_same_id(migrated):
    o = migrated.owner
    rows = o.execute(
        'SELECT vl."id", a."id" IS NOT NULL, a."sessionId" = vl."sessionId",'
        ' a."commitSha" = vl."commitSha", a."createdAt" = vl."verifiedAt",'
        ' a."verificationJobId" IS NULL, a."result"::text, s."status"::text'
        ' FROM "VerificationLog" vl JOIN "LabSession" s ON s."id" = vl."sessionId"'
        ' LEFT JOIN "VerificationAttempt" a ON a."id" = vl."id" ORDER BY vl."id"').fetchall()
    assert len(rows) == len(LOG_KINDS)
    for log_id, found, same_session, same_sha, same_time, no_job, result, status in rows:
        assert (found, same_session, same_sha, same_time, no_job) == (True,) * 5, log_id
        assert result == ("PASS" if status == "VERIFIED_PASS" else "FAIL"), log_id
    assert o.execute('SELECT count(*) FROM "VerificationAttempt"').fetchone()[0] == len(LOG_KINDS)


def test_logs_are_converted_per_kind(migrated):
    for kind in LOG_KINDS:
        _check_log_conversion(migrated, kind)


def _check_log_conversion(migrated, kind):
    o = migrated.owner
    spec = migrated.seed["log_rows"][kind]
    log_id = migrated.seed["logs"][kind]
    logs = o.execute('SELECT "logs" FROM "VerificationAttempt" WHERE "id" = %s',
                     (log_id,)).fetchone()[0]
    assert logs["source"] == {"table": "VerificationLog", "id": str(log_id), "migration": "V0009"}
    for col, fmt_key in (("ciOutput", "ci_format"), ("prDiff", "diff_format")):
        text, fmt = spec[col], spec[fmt_key]
        assert logs[f"{col}Format"] == fmt, (kind, col)
        if fmt == "json":
            same = o.execute(
                'SELECT a."logs" -> %s = vl.' + f'"{col}"' + '::jsonb'
                ' FROM "VerificationAttempt" a JOIN "VerificationLog" vl USING ("id")'
                ' WHERE a."id" = %s', (col, log_id)).fetchone()[0]
            assert same is True, (kind, col)
        else:
            # kept as a JSON string, identical to the original text
            assert isinstance(logs[col], str), (kind, col)
            assert logs[col] == text, (kind, col)
            assert o.execute(
                'SELECT a."logs" ->> %s = vl.' + f'"{col}"' +
                ' FROM "VerificationAttempt" a JOIN "VerificationLog" vl USING ("id")'
                ' WHERE a."id" = %s', (col, log_id)).fetchone()[0] is True


def test_nul_escape_json_is_kept_as_a_string(migrated):
    o = migrated.owner
    logs = o.execute('SELECT "logs" FROM "VerificationAttempt" WHERE "id" = %s',
                     (migrated.seed["logs"]["nul_escape_json"],)).fetchone()[0]
    assert logs["ciOutputFormat"] == "text"
    assert logs["ciOutput"] == '{"stdout": "before\\u0000after", "code": 0}'


def test_two_megabyte_log_is_intact_byte_for_byte(migrated):
    o = migrated.owner
    out, n, digest = o.execute(
        'SELECT "logs" ->> \'ciOutput\', octet_length("logs" ->> \'ciOutput\'),'
        ' encode(sha256(convert_to("logs" ->> \'ciOutput\', \'UTF8\')), \'hex\')'
        ' FROM "VerificationAttempt" WHERE "id" = %s',
        (migrated.seed["logs"]["huge_text"],)).fetchone()
    raw = HUGE_TEXT.encode()
    assert n == len(raw) and n > 2 * 1024 * 1024
    assert digest == hashlib.sha256(raw).hexdigest()
    assert out == HUGE_TEXT


def test_non_ascii_and_control_characters_are_intact(migrated):
    o = migrated.owner
    for kind in ("non_ascii", "control_chars"):
        out = o.execute('SELECT "logs" ->> \'ciOutput\' FROM "VerificationAttempt" WHERE "id" = %s',
                        (migrated.seed["logs"][kind],)).fetchone()[0]
        assert out == migrated.seed["log_rows"][kind]["ciOutput"]
        assert out.encode("utf-8") == migrated.seed["log_rows"][kind]["ciOutput"].encode("utf-8")


def test_legacy_non_hex_and_uppercase_shas_are_kept_unchanged(migrated):
    o = migrated.owner
    for kind, expected in (("nonhex_sha", NONHEX_SHA), ("upper_sha", UPPER_SHA)):
        log_id = migrated.seed["logs"][kind]
        got = o.execute(
            'SELECT vl."commitSha", a."commitSha" FROM "VerificationLog" vl'
            ' JOIN "VerificationAttempt" a USING ("id") WHERE vl."id" = %s', (log_id,)).fetchone()
        assert got == (expected, expected)


def test_every_session_is_on_version_1_of_its_lab(migrated):
    o = migrated.owner
    rows = o.execute(
        'SELECT s."id", v."versionNumber", v."labId" = s."labId", v."snapshot" ->> \'title\' = l."title",'
        ' v."repoVersion" = l."repoVersion" AND v."baseRepoUrl" = l."baseRepoUrl"'
        ' FROM "LabSession" s LEFT JOIN "LabVersion" v ON v."id" = s."labVersionId"'
        ' JOIN "Lab" l ON l."id" = s."labId" ORDER BY s."id"').fetchall()
    assert len(rows) == len(migrated.seed["session_status"])
    assert all(r[1:] == (1, True, True, True) for r in rows), rows
    per_lab = o.execute('SELECT "labId", count(*), max("versionNumber") FROM "LabVersion"'
                        ' GROUP BY "labId"').fetchall()
    assert sorted(per_lab) == sorted((lab, 1, 1) for lab in migrated.seed["labs"])


def test_backfilled_lab_versions_match_the_trigger_snapshot_format(migrated):
    """An identical UPDATE of a migrated lab must not append a version (V0004 == V0005 format)."""
    app = migrated.db.connect("app")
    for lab in migrated.seed["labs"]:
        app.execute('UPDATE "Lab" SET "title" = "title", "constraints" = "constraints"'
                    ' WHERE "id" = %s', (lab,))
    n = migrated.owner.execute('SELECT count(*) FROM "LabVersion"').fetchone()[0]
    assert n == len(migrated.seed["labs"])


def test_completed_at_of_legacy_sessions(migrated):
    o = migrated.owner
    verified = {migrated.seed["log_session"][k]: migrated.seed["log_rows"][k]["verifiedAt"]
                for k in LOG_KINDS}
    for sid, status in migrated.seed["session_status"].items():
        row = session_row(o, sid)
        got_status, completed = row["status"], row["completedAt"]
        assert got_status == status
        if status == "VERIFIED_PASS":
            expected = verified.get(sid, migrated.seed["session_last_activity"][sid])
            assert completed == expected, sid
        else:
            assert completed is None, sid
    assert migrated.seed["pass_without_log"] not in verified


def test_migrated_sessions_follow_the_new_lifecycle(migrated):
    app = migrated.db.connect("app")
    stuck = migrated.seed["sessions"]["STUCK"][0]
    app.execute('UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (stuck,))
    assert session_row(migrated.owner, stuck)["completedAt"] is not None
    passed = migrated.seed["sessions"]["VERIFIED_PASS"][0]
    before = session_row(migrated.owner, passed)
    with raises_sqlstate("FL001"):
        app.execute('UPDATE "LabSession" SET "status" = \'IN_PROGRESS\' WHERE "id" = %s', (passed,))
    assert session_row(migrated.owner, passed) == before


def test_the_migrated_database_is_fully_applied(migrated):
    st = happly.status(migrated.dsn, sql_root=migrated.sql_root)
    assert st["pending"] == [] and st["drift"] == []


# ------------------------------------------------------------------ pre-flight checks


def test_preflight_two_active_sessions_for_one_user_and_lab_stops_before_the_one_active_index(baseline_db, sql_root):
    owner = baseline_db.connect("owner")
    seed = seed_production_like(owner)
    user, lab = seed["free_pairs"][0]
    dups = [uuid.UUID(int=0xD0D0_0001), uuid.UUID(int=0xD0D0_0002)]
    for n, sid in enumerate(dups):
        owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl", "startedAt")'
                      " VALUES (%s, %s, %s, %s, %s)",
                      (sid, user, lab, f"https://github.com/dup/fork-{n}", f"2026-01-2{n + 1}"))
    owner.execute('UPDATE "LabSession" SET "status" = \'STUCK\' WHERE "id" = %s', (dups[1],))
    rows_before = snapshot_rows(owner)
    dsn = baseline_db.dsn("owner")

    msg = _harness_error(lambda: happly.apply(dsn, sql_root=sql_root), "FM001")
    assert "V0013" in msg
    for sid in dups:
        assert str(sid) in msg
    applied = _applied(dsn, sql_root)
    assert applied[-1] == "V0012__lab_session_version_not_null", applied
    assert snapshot_rows(owner) == rows_before
    assert owner.execute(
        "SELECT to_regclass('\"LabSession_userId_labId_active_key\"')").fetchone()[0] is None

    # the DBA's way out: end one of them, then apply again
    baseline_db.connect("app").execute(
        'UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (dups[0],))
    happly.apply(dsn, sql_root=sql_root)
    st = happly.status(dsn, sql_root=sql_root)
    assert st["pending"] == []


def test_preflight_session_without_lab_version_stops_before_the_session_constraints(baseline_db, sql_root):
    """A lab created between V0004 and V0005 has no version: V0010 names its session."""
    owner = baseline_db.connect("owner")
    seed_production_like(owner)
    dsn = baseline_db.dsn("owner")
    happly.apply(dsn, to="V0004__lab_version", sql_root=sql_root)
    lab, sid = ids.lab(900), ids.session(900)
    owner.execute(
        'INSERT INTO "Lab" ("id", "title", "epic", "failureClass", "sourceGithubIssueUrl",'
        ' "repoVersion", "baseRepoUrl", "constraints") VALUES (%s, \'late\', \'e\','
        " 'RESOURCE_LEAK', 'https://x/9', 'v9', 'https://github.com/f/late', '{}')", (lab,))
    owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl")'
                  " VALUES (%s, %s, %s, 'https://github.com/x/late')", (sid, ids.user(4), lab))
    rows_before = snapshot_rows(owner)
    msg = _harness_error(lambda: happly.apply(dsn, sql_root=sql_root), "FM001")
    assert "V0010" in msg and str(sid) in msg
    assert _applied(dsn, sql_root)[-1] == "V0009__verification_attempt_copy"
    assert snapshot_rows(owner) == rows_before
    assert owner.execute(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'LabSession_completedAt_check'"
    ).fetchone()[0] == 0


def test_legacy_copy_rerun_after_an_interruption_keeps_copied_rows_and_copies_the_rest(
        baseline_db, sql_root):
    """V0009 resumes: attempts already copied (an earlier, interrupted run) are kept
    as they are, not duplicated, and every other VerificationLog row is copied."""
    owner = baseline_db.connect("owner")
    seed_production_like(owner)
    dsn = baseline_db.dsn("owner")
    happly.apply(dsn, to="V0008__lab_session_backfill", sql_root=sql_root)
    total = owner.execute('SELECT count(*) FROM "VerificationLog"').fetchone()[0]
    assert total >= 10
    # what a run stopped half-way leaves behind; the marker proves nothing rewrites them
    pre = owner.execute(
        """INSERT INTO "VerificationAttempt"
               ("id", "sessionId", "commitSha", "result", "logs", "createdAt")
           SELECT "id", "sessionId", "commitSha", 'FAIL', '{"marker": "first run"}',
                  "verifiedAt"
           FROM "VerificationLog" ORDER BY "id" LIMIT %s RETURNING "id" """,
        (total // 2,)).fetchall()
    happly.apply(dsn, to="V0009__verification_attempt_copy", sql_root=sql_root)
    rows = dict(owner.execute(
        'SELECT a."id", a."logs" FROM "VerificationAttempt" a').fetchall())
    assert len(rows) == total
    assert all(rows[i] == {"marker": "first run"} for (i,) in pre)
    others = [v for k, v in rows.items() if (k,) not in pre]
    assert len(others) == total - len(pre)
    assert all(v["source"]["migration"] == "V0009" for v in others)
    assert owner.execute(
        'SELECT count(*) FROM "VerificationLog" vl WHERE NOT EXISTS'
        ' (SELECT 1 FROM "VerificationAttempt" a WHERE a."id" = vl."id"'
        ' AND a."sessionId" = vl."sessionId" AND a."commitSha" = vl."commitSha")'
    ).fetchone()[0] == 0


# ------------------------------------------------------------------ rollback with data


def _rows_without(rows, extra_ids):
    return {t: [r for r in rs if r[0] not in extra_ids] for t, rs in rows.items()}


ISSUE3_TOP = "V0013__lab_session_one_active"


def _strip_later_issues(m: Migrated):
    """Roll back everything above the lab-version, lifecycle and attempt files (V0014+), preserving their rows.

    The V0014 rollback refuses even for GitHubRepoMapping rows that V0016 only
    derived from LabSession.userForkUrl (see
    test_rollback_round_trip_with_only_legacy_data), so the refusal tests of
    the lab-version, lifecycle and attempt files start below it.
    """
    happly.rollback(m.dsn, to=ISSUE3_TOP, preserve=True, sql_root=m.sql_root)
    assert _applied(m.dsn, m.sql_root)[-1] == ISSUE3_TOP


def _round_trip_ends_clean(m: Migrated, *, expected_rows=None):
    """At V0002: baseline rows as expected; then apply again: catalog as after the first apply."""
    assert _applied(m.dsn, m.sql_root)[-1] == BASELINE
    assert catalog.diff(m.catalog_base, catalog.snapshot(m.owner)) == []
    assert snapshot_rows(m.owner) == (expected_rows or m.rows_before)
    happly.apply(m.dsn, sql_root=m.sql_root)
    assert catalog.diff(m.catalog_after, catalog.snapshot(m.owner)) == []
    assert m.owner.execute('SELECT count(*) FROM "VerificationAttempt"').fetchone()[0] == \
        m.owner.execute('SELECT count(*) FROM "VerificationLog"').fetchone()[0]


def test_rollback_round_trip_with_only_legacy_data(migrated):
    m = migrated
    attempts_after = m.owner.execute(
        'SELECT md5(string_agg(t::text, \'|\' ORDER BY t."id")) FROM "VerificationAttempt" t'
    ).fetchone()[0]
    happly.rollback(m.dsn, to=BASELINE, sql_root=m.sql_root)
    _round_trip_ends_clean(m)
    assert snapshot_rows(m.owner) == m.rows_before
    again = m.owner.execute(
        'SELECT md5(string_agg(t::text, \'|\' ORDER BY t."id")) FROM "VerificationAttempt" t'
    ).fetchone()[0]
    assert again == attempts_after


def test_rollback_refuses_a_failed_session_and_cannot_preserve_it(migrated):
    m = migrated
    app = m.db.connect("app")
    new_user = ids.user(777)
    app.execute('INSERT INTO "User" ("id", "email") VALUES (%s, %s)', (new_user, "new@example.com"))
    sid = ids.session(777)
    app.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl")'
                " VALUES (%s, %s, %s, 'https://github.com/new/fork')", (sid, new_user, ids.lab(1)))
    app.execute('UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (sid,))
    _strip_later_issues(m)
    rows_with_new = snapshot_rows(m.owner)

    msg = _harness_error(lambda: happly.rollback(m.dsn, to=BASELINE, sql_root=m.sql_root), "FM002")
    assert str(sid) in msg
    stopped_at = _applied(m.dsn, m.sql_root)[-1]
    assert snapshot_rows(m.owner) == rows_with_new
    assert session_row(m.owner, sid)["status"] == "FAILED"
    archive_sql = ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE n.nspname = 'forgea_archive' ORDER BY 1")
    archives = m.owner.execute(archive_sql).fetchall()   # _strip_later_issues' own

    # preservation cannot help: FAILED has no old-schema status. The harness
    # probes the whole rollback first, so the refusal comes before anything is
    # rolled back or archived.
    msg = _harness_error(
        lambda: happly.rollback(m.dsn, to=BASELINE, preserve=True, sql_root=m.sql_root), "FM002")
    assert str(sid) in msg and "FAILED" in msg
    assert _applied(m.dsn, m.sql_root)[-1] == stopped_at
    assert m.owner.execute(archive_sql).fetchall() == archives
    assert snapshot_rows(m.owner) == rows_with_new

    # clearing the blocker: the new session goes (the old schema has no FAILED)
    m.owner.execute('DELETE FROM "LabSession" WHERE "id" = %s', (sid,))
    m.owner.execute('DELETE FROM "User" WHERE "id" = %s', (new_user,))
    # its binding, archived by _strip_later_issues, can no longer be restored (the
    # next apply would refuse with FM003): the DBA moves it out of the archive
    for (name,) in archives:
        m.owner.execute(f'DELETE FROM forgea_archive."{name}" WHERE "row" ->> \'sessionId\' = %s',
                        (str(sid),))
    happly.rollback(m.dsn, to=BASELINE, sql_root=m.sql_root)
    _round_trip_ends_clean(m)


def test_rollback_refuses_a_second_lab_version_and_preserves_it(migrated):
    m = migrated
    app = m.db.connect("app")
    lab = ids.lab(2)
    old = app.execute('SELECT "repoVersion" FROM "Lab" WHERE "id" = %s', (lab,)).fetchone()[0]
    app.execute('UPDATE "Lab" SET "repoVersion" = \'v9.9.9\' WHERE "id" = %s', (lab,))
    app.execute('UPDATE "Lab" SET "repoVersion" = %s WHERE "id" = %s', (old, lab))
    versions = m.owner.execute('SELECT count(*) FROM "LabVersion"').fetchone()[0]
    assert versions == len(m.seed["labs"]) + 2
    _strip_later_issues(m)

    msg = _harness_error(lambda: happly.rollback(m.dsn, to=BASELINE, sql_root=m.sql_root), "FM002")
    assert str(lab) in msg
    assert "LabVersion" in m.owner.execute(
        "SELECT coalesce(to_regclass('\"LabVersion\"')::text, '')").fetchone()[0]
    assert m.owner.execute('SELECT count(*) FROM "LabVersion"').fetchone()[0] == versions
    assert snapshot_rows(m.owner) == m.rows_before

    happly.rollback(m.dsn, to=BASELINE, preserve=True, sql_root=m.sql_root)
    archived = _archive_rows(m.owner, "LabVersion_V0004")
    assert len(archived) == versions
    lab_rows = sorted((r for r in archived if r["labId"] == str(lab)),
                      key=lambda r: r["versionNumber"])
    assert [r["versionNumber"] for r in lab_rows] == [1, 2, 3]
    assert [r["repoVersion"] for r in lab_rows] == [old, "v9.9.9", old]
    assert set(lab_rows[1]) == {"id", "labId", "versionNumber", "repoVersion", "baseRepoUrl",
                                "snapshot", "createdAt"}
    assert lab_rows[1]["snapshot"]["repoVersion"] == "v9.9.9"
    _round_trip_ends_clean(m)
    # the archive survives the re-apply
    assert len(_archive_rows(m.owner, "LabVersion_V0004")) == versions


def test_rollback_refuses_a_non_legacy_attempt_and_preserves_it(migrated):
    m = migrated
    app, worker = m.db.connect("app"), m.db.connect("worker")
    user, _ = add_user_and_labs(m.owner, 600, labs=0)
    sid = create_session(app, user, ids.lab(3), 4242)
    job = push_head_job(app, sha(4242), n=4242)
    claim_and_complete(worker, job, "PASSED")
    attempt_id = m.owner.execute(
        'SELECT "id" FROM "VerificationAttempt" WHERE "verificationJobId" = %s', (job,)).fetchone()[0]

    # take the job queue and the push ledger away (preserving them), so the
    # refusal under test is VerificationAttempt's own (V0006)
    happly.rollback(m.dsn, to="V0006__lab_session_columns_and_verification_attempt", preserve=True, sql_root=m.sql_root)
    rows_mid = snapshot_rows(m.owner)
    msg = _harness_error(
        lambda: happly.rollback(m.dsn, to="V0005__lab_version_guards",
                                sql_root=m.sql_root), "FM002")
    assert str(attempt_id) in msg
    assert _applied(m.dsn, m.sql_root)[-1] == "V0006__lab_session_columns_and_verification_attempt"
    assert snapshot_rows(m.owner) == rows_mid

    happly.rollback(m.dsn, to=BASELINE, preserve=True, sql_root=m.sql_root)
    archived = _archive_rows(m.owner, "VerificationAttempt_V0006")
    by_id = {r["id"]: r for r in archived}
    assert len(by_id) == len(LOG_KINDS) + 1
    forged_free = by_id[str(attempt_id)]
    assert (forged_free["result"], forged_free["verificationJobId"], forged_free["sessionId"]) == (
        "PASS", str(job), str(sid))
    assert set(forged_free) == {"id", "sessionId", "commitSha", "result", "logs",
                                "verificationJobId", "createdAt"}
    # the legacy copies are in the archive as they were
    assert by_id[str(m.seed["logs"]["json_object"])]["logs"]["ciOutputFormat"] == "json"

    # every original row is intact; the new session, user and audit rows remain
    after = snapshot_rows(m.owner)
    new_ids = {sid, user} | {r[0] for r in after["AuditLog"]} - {r[0] for r in m.rows_before["AuditLog"]}
    assert _rows_without(after, new_ids) == m.rows_before
    happly.apply(m.dsn, sql_root=m.sql_root)
    assert catalog.diff(m.catalog_after, catalog.snapshot(m.owner)) == []
