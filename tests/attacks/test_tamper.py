"""Tamper attacks on the push ledger, caught without trusting the database.

The attacker is the migration owner or a superuser: they replace the guard and
hash functions, disable triggers, edit, delete, reorder and re-chain rows with
correctly recomputed hashes (the layout is public), rewrite the AuditLog
anchors, and restore an old backup. Each attack must be caught by the
independent recomputation (``harness.ledger.recompute``, the
``lab_attempt_chain_recomputed`` check of ``harness verify``) or by a
checkpoint taken before it and kept off the database
(``harness verify --checkpoint``). A passed test is an attack caught.
"""

from __future__ import annotations

import pytest
from psycopg import sql

from harness import ledger
from harness import verify as V
from tests.builders import commit, push, seed_world, sha
from tests.helpers import assert_same_recomputation, raises_sqlstate


@pytest.fixture
def world(db):
    """The attack world plus a longer chain on session 2 (still active: chainSeq
    1..4); a checkpoint of it. Session 1 (passed) has chainSeq 1..3."""
    w = seed_world(db)
    app = db.connect("app")
    push(app, [commit(sha(5)), commit(sha(6)), commit(sha(7))], n=2, delivery="d-4")
    owner = db.connect("owner")
    w["checkpoint"] = ledger.take_checkpoint(owner)
    w["owner"], w["su"] = owner, db.connect("superuser")
    return w


def _rows(conn, session):
    return conn.execute(
        'SELECT "id", "chainSeq" FROM "LabAttempt" WHERE "sessionId" = %s '
        'ORDER BY "chainSeq"', (session,)).fetchall()


def _unguarded(su):
    """A superuser switching off every user trigger of the ledger, its jobs and
    attempts, and AuditLog."""
    for t in ("LabAttempt", "AuditLog", "VerificationJob", "VerificationAttempt"):
        su.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(t)))


def _recomputed(conn):
    """The recomputation in this process and shared between three
    (harness.ledger_parts): both must find the same breaks and heads."""
    one = ledger.recompute(conn, parts=1, keep_heads=True)
    shared = ledger.recompute(conn, parts=3, keep_heads=True)
    assert (one.parts, shared.parts) == (1, 3)
    assert_same_recomputation(shared, one)
    return one


def _caught_by_recompute(conn, kind, session):
    rec = _recomputed(conn)
    assert any(b.kind == kind and b.session_id == str(session) for b in rec.breaks), \
        rec.as_dict()


def _caught_by_checkpoint(conn, doc, session):
    problems = ledger.check_checkpoint(conn, doc)
    assert any(str(session) in p for p in problems), problems
    return problems


def test_a_clean_ledger_passes_both_and_verify_reports_the_speed(db, world):
    owner = world["owner"]
    assert _recomputed(owner).breaks == []
    assert ledger.check_checkpoint(owner, world["checkpoint"]) == []
    rep = V.run_checks(owner, require_complete=False, checkpoint=world["checkpoint"])
    for name in ("lab_attempt_chain_recomputed", "checkpoint"):
        assert rep.by_name(name).status != "fail", V.render_table(rep)
    assert "rows/s" in V.render_table(rep)


def test_owner_replacing_guard_and_hash_functions_then_editing_is_caught(db, world):
    owner, s1 = world["owner"], world["s1"]
    owner.execute("CREATE OR REPLACE FUNCTION forbid_ledger_mutation() RETURNS trigger "
                  "LANGUAGE plpgsql AS $$ BEGIN RETURN CASE WHEN TG_OP = 'DELETE' "
                  "THEN OLD ELSE NEW END; END $$")
    owner.execute('CREATE OR REPLACE FUNCTION lab_attempt_row_hash(r public."LabAttempt") '
                  'RETURNS bytea LANGUAGE sql AS $$ SELECT r."rowHash" $$')
    owner.execute('UPDATE "LabAttempt" SET "authorName" = \'FORGED\', "changedFiles" = '
                  '\'{"added": [], "modified": ["x"], "removed": []}\' '
                  'WHERE "sessionId" = %s AND "chainSeq" = 2', (s1,))
    # the database's own verifier has been neutered ...
    assert owner.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)"
                         ).fetchone()[0] == 0
    # ... the independent one is not
    _caught_by_recompute(owner, "edited", s1)
    rep = V.run_checks(owner, require_complete=False)
    assert rep.by_name("lab_attempt_chain_recomputed").status == "fail"


def test_superuser_editing_a_field_with_triggers_disabled_is_caught(db, world):
    su, s1 = world["su"], world["s1"]
    _unguarded(su)
    su.execute('UPDATE "LabAttempt" SET "pushedAt" = "pushedAt" + interval \'1 ms\' '
               'WHERE "sessionId" = %s AND "chainSeq" = 1', (s1,))
    _caught_by_recompute(su, "edited", s1)
    _caught_by_checkpoint(su, world["checkpoint"], s1)


def test_deleting_the_newest_rows_without_their_anchors_is_caught(db, world):
    su, s2 = world["su"], world["s2"]
    _unguarded(su)
    su.execute('DELETE FROM "VerificationJob" WHERE "sessionId" = %s', (s2,))
    su.execute('DELETE FROM "LabAttempt" WHERE "sessionId" = %s AND "chainSeq" >= 3', (s2,))
    _caught_by_recompute(su, "missing", s2)
    _caught_by_checkpoint(su, world["checkpoint"], s2)


def test_deleting_the_newest_rows_with_their_anchors_is_caught_by_the_checkpoint(db, world):
    su, s2 = world["su"], world["s2"]
    _unguarded(su)
    gone = [str(r[0]) for r in _rows(su, s2) if r[1] >= 3]
    su.execute('DELETE FROM "AuditLog" WHERE "action" = \'PUSH_RECORDED\' AND EXISTS ('
               "SELECT 1 FROM jsonb_array_elements(metadata -> 'attempts') e "
               "WHERE e ->> 'id' = ANY(%s))", (gone,))
    su.execute('DELETE FROM "VerificationJob" WHERE "sessionId" = %s', (s2,))
    su.execute('DELETE FROM "LabAttempt" WHERE "sessionId" = %s AND "chainSeq" >= 3', (s2,))
    # nothing left inside the database shows it
    assert _recomputed(su).breaks == []
    problems = _caught_by_checkpoint(su, world["checkpoint"], s2)
    assert any("is gone" in p for p in problems), problems


def test_deleting_a_whole_session_ledger_is_caught_by_the_checkpoint(db, world):
    su, s1 = world["su"], world["s1"]
    _unguarded(su)
    su.execute('DELETE FROM "AuditLog" WHERE "action" = \'PUSH_RECORDED\' '
               "AND metadata ->> 'sessionId' = %s", (str(s1),))
    su.execute('DELETE FROM "VerificationAttempt" WHERE "sessionId" = %s', (s1,))
    su.execute('DELETE FROM "VerificationJob" WHERE "sessionId" = %s', (s1,))
    su.execute('DELETE FROM "LabAttempt" WHERE "sessionId" = %s', (s1,))
    assert ledger.recompute(su).breaks == []
    _caught_by_checkpoint(su, world["checkpoint"], s1)


def test_reordering_two_rows_is_caught(db, world):
    su, s1 = world["su"], world["s2"]
    _unguarded(su)
    su.execute('DROP INDEX "LabAttempt_sessionId_chainSeq_key"')
    su.execute('UPDATE "LabAttempt" SET "chainSeq" = CASE "chainSeq" WHEN 2 THEN 3 ELSE 2 END '
               'WHERE "sessionId" = %s AND "chainSeq" IN (2, 3)', (s1,))
    _caught_by_recompute(su, "relinked", s1)
    _caught_by_checkpoint(su, world["checkpoint"], s1)


def test_rechaining_from_a_forged_row_with_recomputed_hashes_is_caught_by_the_checkpoint(
        db, world):
    """The attacker knows the layout: every hash and anchor is made consistent."""
    su, s1 = world["su"], world["s2"]
    _unguarded(su)
    su.execute('UPDATE "LabAttempt" SET "authorName" = \'FORGED\' '
               'WHERE "sessionId" = %s AND "chainSeq" = 3', (s1,))
    su.execute("SET DateStyle = 'ISO, YMD'")
    su.execute("SET TimeZone = 'UTC'")
    prev = None
    with su.cursor() as cur:
        cur.execute(ledger.rows_sql('a."sessionId" = %s'), (s1,))
        rows = [ledger.Row(*r[:11], chain_seq=r[11], prev_hash=bytes(r[12]),
                           row_hash=bytes(r[13])) for r in cur.fetchall()]
    for r in rows:
        p = prev if prev is not None else r.prev_hash
        h = ledger.row_hash(r, p)
        su.execute('UPDATE "LabAttempt" SET "prevHash" = %s, "rowHash" = %s WHERE "id" = %s',
                   (p, h, r.id))
        su.execute('UPDATE "AuditLog" SET metadata = jsonb_set(metadata, \'{attempts}\', ('
                   "SELECT jsonb_agg(CASE WHEN e ->> 'id' = %s THEN jsonb_set(e, '{rowHash}', "
                   "to_jsonb(%s::text)) ELSE e END) FROM jsonb_array_elements("
                   "metadata -> 'attempts') e)) WHERE action = 'PUSH_RECORDED' "
                   "AND metadata -> 'attempts' @> jsonb_build_array(jsonb_build_object("
                   "'id', %s::text))", (r.id, h.hex(), r.id))
        prev = h
    # consistent inside the database: both verifiers see nothing
    assert ledger.recompute(su).breaks == []
    assert su.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)").fetchone()[0] == 0
    problems = _caught_by_checkpoint(su, world["checkpoint"], s1)
    assert any("rewritten" in p for p in problems), problems


def test_restoring_an_old_backup_over_newer_rows_is_caught_by_the_checkpoint(
        db, world, pg_cluster):
    """A copy of the database taken before the latest pushes is put in its place."""
    backup = f"{db.name}_backup"
    with pg_cluster.connect() as su:
        su.execute(f'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                   f"WHERE datname = '{db.name}' AND pid <> pg_backend_pid()")
        su.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(backup), sql.Identifier(db.name)))
    db.close()
    try:
        app = db.connect("app")
        push(app, [commit(sha(8))], n=2, delivery="d-5")
        later = ledger.take_checkpoint(db.connect("owner"))
        with __import__("psycopg").connect(pg_cluster.dsn(dbname=backup),
                                           autocommit=True) as old:
            assert ledger.recompute(old).breaks == []
            problems = ledger.check_checkpoint(old, later)
        assert any(str(world["s2"]) in p and "is gone" in p for p in problems), problems
    finally:
        with pg_cluster.connect() as su:
            su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(backup)))


def test_a_later_checkpoint_extends_an_earlier_one_offline(db, world, tmp_path):
    app, owner = db.connect("app"), world["owner"]
    earlier = world["checkpoint"]
    push(app, [commit(sha(9))], n=2, delivery="d-6")
    later = ledger.take_checkpoint(owner, previous=earlier)
    assert later["previousRoot"] == earlier["root"]
    assert ledger.compare(earlier, later) == []
    # the reverse does not hold: a head went back
    assert ledger.compare(later, earlier)


def test_an_edited_checkpoint_file_is_refused(tmp_path, world):
    import json
    doc = dict(world["checkpoint"])
    doc["sessions"] = [dict(e) for e in doc["sessions"]]
    doc["sessions"][0]["chainSeq"] = 1
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ledger.CheckpointError, match="root does not match"):
        ledger.load(path)


def test_a_checkpoint_is_refused_on_a_broken_ledger_and_is_recorded_append_only(db, world):
    su, owner = world["su"], world["owner"]
    ledger.record(owner, world["checkpoint"])
    with raises_sqlstate("FA001"):
        owner.execute('DELETE FROM "LedgerCheckpoint"')
    with raises_sqlstate("FA001"):
        owner.execute('UPDATE "LedgerCheckpoint" SET "root" = repeat(\'0\', 64)')
    _unguarded(su)
    su.execute('UPDATE "LabAttempt" SET "branch" = \'forged\' WHERE "sessionId" = %s '
               'AND "chainSeq" = 1', (world["s1"],))
    with pytest.raises(ledger.CheckpointError, match="broken"):
        ledger.take_checkpoint(owner)
    assert owner.execute('SELECT count(*) FROM "LedgerCheckpoint"').fetchone()[0] == 1


def test_row_hash_layout_matches_the_database_on_every_row(db, world):
    """The one byte layout in harness.ledger agrees with the trigger's hashes."""
    owner = world["owner"]
    owner.execute("SET DateStyle = 'ISO, YMD'")
    rows = owner.execute(ledger.ROWS_SQL).fetchall()
    assert len(rows) == 7
    for r in rows:
        row = ledger.Row(*r[:11], chain_seq=r[11], prev_hash=bytes(r[12]),
                         row_hash=bytes(r[13]))
        assert ledger.row_hash(row) == row.row_hash


def test_layout_timestamps_have_one_spelling_each_and_refuse_the_rest():
    assert ledger.layout_timestamp("2026-02-10 10:00:00") == "2026-02-10T10:00:00.000Z"
    assert ledger.layout_timestamp("2026-02-10 10:00:00.5") == "2026-02-10T10:00:00.500Z"
    assert ledger.layout_timestamp("0001-01-01 00:00:00") == "0001-01-01T00:00:00.000Z"
    assert ledger.layout_timestamp("9999-12-31 23:59:59.999") == "9999-12-31T23:59:59.999Z"
    # to_char() writes a BC year like the AD one and both infinities as NULL
    for text in ("0044-03-15 12:00:00.123 BC", "294276-12-31 23:59:59.999", "infinity",
                 "-infinity", "2026-02-10 10:00:00.1234"):
        with pytest.raises(ValueError, match="has no place in the layout"):
            ledger.layout_timestamp(text)




# ------------------------------------------------------- definitions, not names

DEFINITION_ATTACKS = {
    "guard_replaced": (
        "CREATE OR REPLACE FUNCTION forbid_ledger_mutation() RETURNS trigger "
        "LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$ BEGIN "
        "RETURN NULL; END $$", "function forbid_ledger_mutation()", "body differs"),
    "hash_replaced": (
        'CREATE OR REPLACE FUNCTION lab_attempt_row_hash(r public."LabAttempt") '
        "RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE "
        "SET search_path = pg_catalog, public, pg_temp AS $$ BEGIN "
        'RETURN r."rowHash"; END $$', 'function lab_attempt_row_hash(r "LabAttempt")',
        "body differs"),
    "check_dropped": ('ALTER TABLE "LabAttempt" DROP CONSTRAINT "LabAttempt_commitSha_check"',
                      'constraint "LabAttempt_commitSha_check" on "LabAttempt"', "missing"),
    "trigger_added": ('CREATE TRIGGER aaa_first BEFORE INSERT ON "LabAttempt" FOR EACH ROW '
                      "EXECUTE FUNCTION lab_session_version_default()",
                      'trigger "aaa_first" on "LabAttempt"', "unexpected"),
    "trigger_mode": ('ALTER TABLE "LabAttempt" ENABLE TRIGGER labattempt_append_only',
                     'trigger "labattempt_append_only" on "LabAttempt"', "enabled differs"),
    "grant_widened": ('GRANT UPDATE ON "LabAttempt" TO forgea_app',
                      'privilege on table LabAttempt', "forgea_app UPDATE unexpected"),
    "security_definer_added": (
        "ALTER FUNCTION canonical_repo_url(text) SECURITY DEFINER",
        "function canonical_repo_url(url text)", "security_definer differs"),
}


@pytest.mark.parametrize("case", sorted(DEFINITION_ATTACKS))
def test_owner_changing_what_a_name_means_fails_verify_by_name(db, reference_snapshot, case):
    ddl, obj, message = DEFINITION_ATTACKS[case]
    owner = db.connect("owner")
    clean = V.run_checks(owner, reference_snapshot=reference_snapshot)
    assert clean.by_name("definitions").status != "fail", V.render_table(clean)
    owner.execute(ddl)
    rep = V.run_checks(owner, reference_snapshot=reference_snapshot)
    c = rep.by_name("definitions")
    hits = [f for f in c.findings if f["severity"] == "fail" and f["object"] == obj
            and message in f["message"]]
    assert hits, V.render_table(rep)
