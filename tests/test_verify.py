"""harness verify: passes on sound databases, fails naming the object on planted defects."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import uuid

import psycopg
import pytest

from harness import apply as A
from harness import verify as V
from harness.cli import main as cli_main
from harness.errors import LocalProblem
from tests.builders import seed_world
from tests.chain_ids import CHAIN
from tests.helpers import legacy_checkpoint


def report(db, sql_root=None, role="owner", **kw) -> V.Report:
    return V.verify(db.dsn(role), sql_root=sql_root, **kw)


def assert_ok(rep: V.Report):
    assert rep.ok, V.render_table(rep)


def assert_fails(rep: V.Report, check: str, obj_part: str, msg_part: str = ""):
    c = rep.by_name(check)
    assert c.status == "fail", V.render_table(rep)
    hits = [f for f in c.findings if f["severity"] == "fail" and obj_part in f["object"]
            and msg_part in (f["message"] + " ".join(f.get("rows", [])))]
    assert hits, f"no failure naming {obj_part!r} / {msg_part!r} in {check}:\n" \
                 + V.render_table(rep)
    return hits


@pytest.fixture
def world(db):
    return seed_world(db)


# ----------------------------------------------------------------- passes


def test_passes_on_fresh_database(db):
    rep = report(db)
    assert_ok(rep)
    names = [c.name for c in rep.checks]
    for n in ("migration_chain", "guard_triggers", "constraints_validated", "indexes_valid",
              "lifecycle_completed_at", "lab_version_agreement",
              "one_active_session_per_user_lab", "one_active_session_per_repo",
              "job_status_consistency", "one_running_job_per_session",
              "job_commit_matches_attempt", "job_attempt_results",
              "verified_pass_has_pass_attempt", "session_identity",
              "repo_binding_agreement", "restorable_values", "sha_format",
              "lab_attempt_chain",
              "role_attributes", "ownership", "table_privileges", "column_privileges",
              "function_privileges", "schema_privileges", "security_definer"):
        assert n in names


def test_passes_with_data_and_json_shape(db, world):
    out = io.StringIO()
    assert V.run(db.dsn(), json_output=True, out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["ok"] is True
    assert {c["status"] for c in doc["checks"]} <= {"pass", "info"}
    assert all({"name", "status", "findings"} <= set(c) for c in doc["checks"])
    # each check's wall time, and the reference's apart (built or read from its cache)
    assert all(isinstance(c["elapsed_s"], float) and c["elapsed_s"] >= 0 for c in doc["checks"])
    assert isinstance(doc["reference_s"], float) and doc["reference_s"] >= 0


def test_cli_exit_codes(db, world, capsys):
    assert cli_main(["verify", "--target", db.dsn()]) == 0
    assert "verify: OK" in capsys.readouterr().out
    owner = db.connect("owner")
    owner.execute('GRANT UPDATE ON "LabAttempt" TO forgea_app')
    assert cli_main(["verify", "--target", db.dsn(), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False


def _legacy_seed(conn):
    """Production-like rows at the baseline: legacy passes, a non-hex legacy SHA."""
    lab = uuid.uuid4()
    conn.execute('INSERT INTO "Lab" (id, title, epic, "failureClass", "sourceGithubIssueUrl", '
                 '"repoVersion", "baseRepoUrl", constraints) VALUES (%s, %s, %s, '
                 "'DATA_INTEGRITY', 'https://github.com/forgea/labs/issues/9', 'v1', "
                 "'https://github.com/forgea/lab-9', '{}')", (lab, "Legacy", "Epic"))
    sessions = []
    for i, (url, passed, log_sha) in enumerate([
            ("https://github.com/Legacy1/lab-9.git", True, "ABC123-not-hex"),
            ("git@github.com:legacy2/lab-9.git", True, None),     # passed, no log at all
            ("https://github.com/legacy3/lab-9", False, "b" * 40),
            ("not a url at all", False, None)]):
        s = uuid.uuid4()
        sessions.append(s)
        uu = uuid.uuid4()
        conn.execute('INSERT INTO "User" (id, email) VALUES (%s, %s)', (uu, f"{uu}@example.com"))
        conn.execute('INSERT INTO "LabSession" (id, "userId", "labId", "userForkUrl") '
                     "VALUES (%s, %s, %s, %s)", (s, uu, lab, url))
        if log_sha:
            conn.execute('INSERT INTO "VerificationLog" (id, "sessionId", "commitSha", "prDiff", '
                         '"ciOutput") VALUES (%s, %s, %s, %s, %s)',
                         (uuid.uuid4(), s, log_sha, "diff", '{"ok": true}'))
        if passed:
            conn.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS' WHERE id = %s""",
                         (s,))
    return sessions


def test_passes_on_production_like_database_then_migrated(baseline_db, sql_root):
    conn = baseline_db.connect("owner")
    try:
        from tests.prodlike import seed_production_like  # colleague's dataset, when present
    except ImportError:
        seed_production_like = None
    if seed_production_like is not None:
        seed_production_like(conn)
    sessions = _legacy_seed(conn)
    A.apply(baseline_db.dsn(), sql_root=sql_root)
    # without evidence kept off the database the legacy pass is unproven: a failure
    assert_fails(report(baseline_db), "verified_pass_has_pass_attempt", "VERIFIED_PASS",
                 str(sessions[1]))
    rep = report(baseline_db, checkpoint=legacy_checkpoint(baseline_db.dsn()))
    assert_ok(rep)
    # the legacy pass without a log, listed by the checkpoint, is reported, not failed
    vp = rep.by_name("verified_pass_has_pass_attempt")
    assert any(str(sessions[1]) in " ".join(f.get("rows", [])) for f in vp.findings
               if f["severity"] == "info"), V.render_table(rep)
    sf = rep.by_name("sha_format")
    assert any("legacy rows kept" in f["message"] for f in sf.findings), V.render_table(rep)


def test_passes_on_adopted_prisma_database(upstream_db, sql_root):
    conn = upstream_db.connect("owner")
    _legacy_seed(conn)
    r = A.apply(upstream_db.dsn(), sql_root=sql_root)
    assert r.adopted == ["V0001__baseline"]
    # the pack's roles get their login members in the session fixtures already;
    # the legacy pass is excused by the checkpoint the DBA keeps after migrating
    rep = report(upstream_db, checkpoint=legacy_checkpoint(upstream_db.dsn()))
    assert_ok(rep)
    assert any("adopted" in f["message"] for f in rep.by_name("migration_chain").findings)


def test_read_only_connection_still_passes(db, world):
    su = db.connect("superuser")
    su.execute(f'ALTER ROLE readonly_login IN DATABASE "{db.name}" '
               "SET default_transaction_read_only = on")
    try:
        # a connection that cannot write at all, as the owner: verify still passes
        dsn = db.dsn("owner") + "?options=-c%20default_transaction_read_only%3Don"
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE nope (id int)")
            rep = V.run_checks(conn)
        assert_ok(rep)
    finally:
        su.execute(f'ALTER ROLE readonly_login IN DATABASE "{db.name}" RESET ALL')


def test_a_check_the_role_may_not_run_says_so_by_name_and_the_others_run(db, world):
    """As forgea_readonly, restorable_values reads a table that role may not read
    (VerificationToken, 42501): that check alone is "could not run", naming what was
    denied; every other check runs and passes; the report is no failure."""
    rep = V.verify(db.dsn("readonly"), reference_snapshot=None)
    denied = rep.by_name("restorable_values")
    assert denied.status == "could_not_run"
    assert [f["message"].split(" (SQLSTATE")[0] for f in denied.findings] == [
        "could not run: permission denied for table VerificationToken"]
    assert rep.ok and rep.exit_code == 0 and rep.not_run() == ["restorable_values"]
    for c in rep.checks:
        if c.name != "restorable_values":
            assert c.status in ("pass", "info"), V.render_table(rep)
    assert "could not run (this role lacks a privilege): restorable_values" in \
        V.render_table(rep)


@pytest.mark.parametrize("error", [ValueError("bad value"), KeyError("sessionId"),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"),
                                   psycopg.errors.DivisionByZero("division by zero")])
def test_a_check_that_raises_anything_fails_alone_under_its_own_name(db, world, monkeypatch,
                                                                    error):
    def broken(c, ctx):
        ctx.conn.execute("SELECT 1")
        raise error
    checks = tuple((n, broken if n == "sha_format" else fn, needs)
                   for n, fn, needs in V.CHECKS)
    monkeypatch.setattr(V, "CHECKS", checks)
    rep = report(db, reference_snapshot=None)
    assert rep.failed() == ["sha_format"], V.render_table(rep)
    [finding] = rep.by_name("sha_format").findings
    assert finding["message"].startswith("check errored: ")
    assert type(error).__name__ in finding["message"] or "SQLSTATE" in finding["message"]
    assert rep.exit_code == 1
    assert len(rep.checks) == len(checks) - 2   # checkpoint and definitions need their input


def test_verify_writes_nothing(db, world):
    """With the whole database forced read-only (as on a hot standby), verify still
    passes through its own connection, and no table changed."""
    from tests.helpers import digests
    su = db.connect("superuser")
    owner = db.connect("owner")
    tables = [r[0] for r in owner.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND relkind = 'r'")]
    before = digests(owner, tables)
    su.execute(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = on')
    try:
        rep = report(db)
        assert_ok(rep)
    finally:
        su.execute(f'ALTER DATABASE "{db.name}" RESET default_transaction_read_only')
    assert digests(owner, tables) == before


# ----------------------------------------------------------------- planted defects


def _superuser(db):
    return db.connect("superuser")


def test_fails_on_disabled_trigger(db, world):
    _superuser(db).execute('ALTER TABLE "LabAttempt" DISABLE TRIGGER labattempt_append_only')
    assert_fails(report(db), "guard_triggers", 'labattempt_append_only on "LabAttempt"',
                 "DISABLED")


def test_fails_on_trigger_no_longer_always(db, world):
    db.connect("owner").execute('ALTER TABLE "AuditLog" ENABLE TRIGGER auditlog_no_truncate')
    assert_fails(report(db), "guard_triggers", 'auditlog_no_truncate on "AuditLog"',
                 "origin only")


def test_fails_on_dropped_trigger(db, world):
    db.connect("owner").execute('DROP TRIGGER verificationjob_no_truncate ON "VerificationJob"')
    assert_fails(report(db), "guard_triggers", "verificationjob_no_truncate", "missing")


def test_fails_on_extra_grant(db, world):
    db.connect("owner").execute('GRANT UPDATE ON "LabAttempt" TO forgea_app')
    rep = report(db)
    assert_fails(rep, "table_privileges", '"LabAttempt" to forgea_app', "UPDATE")
    assert_fails(rep, "table_privileges", '"LabAttempt"', "forgea_app can UPDATE")


def test_fails_on_grant_to_a_login_role(db, world):
    db.connect("owner").execute('GRANT INSERT ON "VerificationJob" TO hostile_login')
    assert_fails(report(db), "table_privileges", '"VerificationJob" to hostile_login', "INSERT")


def test_fails_on_secret_column_readable(db, world):
    db.connect("owner").execute('GRANT SELECT ("access_token") ON "Account" TO forgea_readonly')
    rep = report(db)
    assert_fails(rep, "column_privileges", '"Account"."access_token"', "SELECT")


def test_fails_on_edited_ledger_row(db, world):
    su = _superuser(db)
    with su.transaction():
        su.execute('ALTER TABLE "LabAttempt" DISABLE TRIGGER ALL')
        victim = su.execute('UPDATE "LabAttempt" SET "authorName" = %s '
                            'WHERE "chainSeq" = 1 AND "sessionId" = %s RETURNING id',
                            ("Mallory", world["s1"])).fetchone()[0]
        su.execute('ALTER TABLE "LabAttempt" ENABLE TRIGGER ALL')
        su.execute('ALTER TABLE "LabAttempt" ENABLE ALWAYS TRIGGER labattempt_chain_hash, '
                   "ENABLE ALWAYS TRIGGER labattempt_append_only, "
                   "ENABLE ALWAYS TRIGGER labattempt_no_truncate")
    rep = report(db)
    assert_fails(rep, "lab_attempt_chain", "LabAttempt", str(victim))
    assert rep.by_name("guard_triggers").status != "fail", V.render_table(rep)


def test_fails_on_not_valid_constraint(db, world):
    owner = db.connect("owner")
    owner.execute('ALTER TABLE "LabSession" ADD CONSTRAINT "LabSession_fork_check" '
                  "CHECK (length(\"userForkUrl\") > 0) NOT VALID")
    assert_fails(report(db), "constraints_validated", 'LabSession_fork_check on "LabSession"',
                 "NOT VALID")


def test_fails_on_active_session_with_completed_at(db, world):
    su = _superuser(db)
    with su.transaction():
        su.execute('ALTER TABLE "LabSession" DISABLE TRIGGER ALL')
        su.execute('ALTER TABLE "LabSession" DROP CONSTRAINT "LabSession_completedAt_check"')
        su.execute("""UPDATE "LabSession" SET "completedAt" = now() WHERE id = %s""",
                   (world["s2"],))
        su.execute('ALTER TABLE "LabSession" ADD CONSTRAINT "LabSession_completedAt_check" '
                   "CHECK ((status::text IN ('VERIFIED_PASS', 'FAILED')) = "
                   '("completedAt" IS NOT NULL)) NOT VALID')
        su.execute('ALTER TABLE "LabSession" ENABLE TRIGGER ALL')
        for t in ("labsession_lifecycle_guard", "labsession_version_default",
                  "labsession_repo_mapping_active", "labsession_repo_mapping_autobind"):
            su.execute(f'ALTER TABLE "LabSession" ENABLE ALWAYS TRIGGER {t}')
    rep = report(db)
    assert_fails(rep, "lifecycle_completed_at", '"LabSession"', str(world["s2"]))
    assert_fails(rep, "constraints_validated", "LabSession_completedAt_check")


def test_fails_on_public_executable_definer_function(db, world):
    db.connect("owner").execute(
        "GRANT EXECUTE ON FUNCTION complete_verification_job(uuid, text, "
        '"VerificationJobStatus", integer, jsonb, uuid, bytea, text, timestamptz) TO PUBLIC')
    assert_fails(report(db), "function_privileges", "complete_verification_job",
                 "executable by everyone")


def test_fails_on_new_function_left_public(db, world):
    db.connect("owner").execute(
        "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    rep = report(db)
    assert_fails(rep, "function_privileges", "sneaky()", "PUBLIC")
    assert_fails(rep, "security_definer", "sneaky()", "search_path")


def test_fails_on_definer_search_path_reset(db, world):
    db.connect("owner").execute("ALTER FUNCTION record_push(text, bigint, text, text, text, "
                                "timestamptz, jsonb) RESET search_path")
    assert_fails(report(db), "security_definer", "record_push", "search_path")


def test_fails_on_definer_search_path_public_first(db, world):
    db.connect("owner").execute("ALTER FUNCTION create_lab_session(uuid, uuid, text, bigint, "
                                "text) SET search_path = public, pg_catalog, pg_temp")
    assert_fails(report(db), "security_definer", "create_lab_session", "pg_catalog")


def test_fails_on_definer_owned_by_another_role(db, world):
    su = _superuser(db)
    su.execute("ALTER FUNCTION requeue_expired_verification_jobs() OWNER TO postgres")
    assert_fails(report(db), "security_definer", "requeue_expired_verification_jobs",
                 "owned by postgres")


def test_fails_on_create_in_public(db, world):
    _superuser(db).execute("GRANT CREATE ON SCHEMA public TO forgea_app")
    assert_fails(report(db), "schema_privileges", "schema public", "CREATE")


def test_fails_on_group_role_escalation(db, world):
    # roles are cluster-wide: undo it even when the assertions fail
    _superuser(db).execute("GRANT pg_write_all_data TO forgea_worker")
    try:
        rep = report(db)
        assert_fails(rep, "role_attributes", "forgea_worker", "pg_write_all_data")
        assert_fails(rep, "table_privileges", '"VerificationJob"', "forgea_worker can UPDATE")
    finally:
        _superuser(db).execute("REVOKE pg_write_all_data FROM forgea_worker")


def test_fails_on_two_running_jobs_planted(db, world):
    su = _superuser(db)
    app = db.connect("app")
    from tests.builders import commit, push
    from tests.builders import sha
    push(app, [commit(sha(50)), commit(sha(51))], n=2, delivery="d-x")  # session 2 gets two more queued jobs
    with su.transaction():
        su.execute('ALTER TABLE "VerificationJob" DISABLE TRIGGER ALL')
        su.execute('DROP INDEX "VerificationJob_sessionId_running_key"')
        su.execute("""UPDATE "VerificationJob" SET status = 'RUNNING', "runCount" = 1,
                      "startedAt" = now(), "leaseOwner" = 'x',
                      "leaseExpiresAt" = now() + interval '1 hour'
                      WHERE "sessionId" = %s AND status = 'QUEUED'""", (world["s2"],))
        su.execute('ALTER TABLE "VerificationJob" ENABLE TRIGGER ALL')
        su.execute('ALTER TABLE "VerificationJob" ENABLE ALWAYS TRIGGER '
                   "verificationjob_transition_guard, ENABLE ALWAYS TRIGGER "
                   "verificationjob_no_truncate")
    assert_fails(report(db), "one_running_job_per_session", '"VerificationJob"',
                 str(world["s2"]))


def test_fails_on_edited_migration_file(db, sql_root, tmp_path):
    root = tmp_path / "sql"
    shutil.copytree(sql_root, root)
    f = root / "triggers" / "V0003__legacy_append_only_hardening.sql"
    f.write_text(f.read_text() + "\n-- an innocent-looking edit\n")
    rep = report(db, sql_root=root)
    assert_fails(rep, "migration_chain", "_harness_migration",
                 "V0003__legacy_append_only_hardening")


def test_pending_is_failure_only_when_complete_required(baseline_db, sql_root):
    rep = report(baseline_db)
    assert_fails(rep, "migration_chain", "sql/", "pending")
    rep = report(baseline_db, require_complete=False)
    assert rep.by_name("migration_chain").status == "info"


def test_definitions_match_what_the_files_create_on_fresh_and_adopted_databases(
        db, prod_db, reference_snapshot):
    for d in (db, prod_db):
        rep = report(d, reference_snapshot=reference_snapshot,
                     checkpoint=legacy_checkpoint(d.dsn()))
        assert_ok(rep)
        c = rep.by_name("definitions")
        assert any("as the applied files create them" in f["message"] for f in c.findings)


def test_cli_builds_the_reference_on_a_throwaway_server_and_names_a_replaced_guard(db):
    """`harness verify` without --no-reference builds what the applied files
    create on a server of the live major, out of the live database's reach."""
    out = io.StringIO()
    assert V.run(db.dsn("owner"), json_output=True, out=out) == 0, out.getvalue()
    db.connect("owner").execute(
        "CREATE OR REPLACE FUNCTION forbid_ledger_mutation() RETURNS trigger "
        "LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$ BEGIN "
        "RETURN NULL; END $$")
    out = io.StringIO()
    assert V.run(db.dsn("owner"), json_output=True, out=out) == 1
    checks = {c["name"]: c for c in json.loads(out.getvalue())["checks"]}
    assert checks["definitions"]["status"] == "fail"
    assert any(f["object"] == "function forbid_ledger_mutation()"
               for f in checks["definitions"]["findings"])


def _without_identity_guard(db, stmt, params):
    """What the pack before V0007 let through, planted by a superuser."""
    su = _superuser(db)
    with su.transaction():
        su.execute('ALTER TABLE "LabSession" DISABLE TRIGGER labsession_identity_guard')
        su.execute(stmt, params)
        su.execute('ALTER TABLE "LabSession" ENABLE ALWAYS TRIGGER labsession_identity_guard')


def test_fails_on_a_pass_moved_to_another_user(db, world):
    from tests.builders import ids
    _without_identity_guard(db, 'UPDATE "LabSession" SET "userId" = %s WHERE id = %s',
                            (ids.user(3), world["s1"]))
    rep = report(db)
    assert_fails(rep, "session_identity", '"LabSession".userId', str(world["s1"]))
    assert_fails(rep, "session_identity", '"LabSession" (userId, labId)', str(world["s1"]))


def test_fails_on_a_session_moved_to_another_repository_or_start(db, world):
    _without_identity_guard(db, 'UPDATE "LabSession" SET "userForkUrl" = %s, '
                                "\"startedAt\" = '2020-01-01' WHERE id = %s",
                            ("https://github.com/attacker/other", world["s2"]))
    rep = report(db)
    assert_fails(rep, "session_identity", '"LabSession".userForkUrl', str(world["s2"]))
    assert_fails(rep, "session_identity", '"LabSession".startedAt', str(world["s2"]))


def test_reports_running_jobs_claimed_without_a_lease_token(db, world):
    """A job claimed before V0017 (planted: its token hash removed) is still
    completable by its leaseOwner alone: reported as info, not a failure."""
    from tests.builders import claim, commit, push
    from tests.builders import sha
    push(db.connect("app"), [commit(sha(8701))], n=2, delivery="d-legacy")
    job = claim(db.connect("worker"), "legacy-worker")["id"]
    su = _superuser(db)
    with su.transaction():
        su.execute('ALTER TABLE "VerificationJob" DISABLE TRIGGER verificationjob_transition_guard')
        su.execute('UPDATE "VerificationJob" SET "leaseTokenHash" = NULL WHERE id = %s', (job,))
        su.execute('ALTER TABLE "VerificationJob" ENABLE ALWAYS TRIGGER '
                   "verificationjob_transition_guard")
    rep = report(db)
    assert_ok(rep)
    c = rep.by_name("job_status_consistency")
    assert c.status == "info" and any(str(job) in " ".join(f.get("rows", []))
                                      for f in c.findings), V.render_table(rep)


def test_fails_on_pushes_captured_by_a_repository_id_before_the_fix(db, sql_root):
    """The capture that the pre-release record_push let through leaves a
    PUSH_RECORDED row for the victim's URL in the attacker's session: verify names
    it. The pre-release functions (tests/data) are installed for the push and the
    release chain's put back before verify runs."""
    from pathlib import Path

    from tests.attacks.test_identity import capture_setup, victim_push
    data = Path(__file__).resolve().parent / "data" / "prerelease_capture_functions.sql"
    api = [f for f in A.load_chain(sql_root) if f.id == "V0019__push_and_queue_api"][0]
    owner = db.connect("owner")
    owner.execute(data.read_text())
    victim, attacker = capture_setup(db)
    assert [r[4] for r in victim_push(db.connect("app"))] == ["recorded"]   # captured
    for name in ("resolve_lab_session", "record_push"):
        body = re.search(r"^CREATE FUNCTION " + name + r"\(.*?^\$\$;$", api.sql,
                         re.M | re.S).group(0)
        owner.execute(body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    assert_fails(report(db, sql_root=sql_root), "repo_binding_agreement",
                 '"AuditLog" PUSH_RECORDED', str(attacker))


def test_fails_on_a_binding_made_by_a_locale_dependent_canonical_form(db, world):
    """Under a UTF-8 locale V0014 turned a Kelvin sign into "k" and bound the
    session to https://github.com/kate/...; today the URL is refused (NULL), so
    the binding no longer follows from the session's fork URL: reported."""
    from tests.builders import ids
    owner = db.connect("owner", autocommit=False)
    sid = uuid.uuid4()
    owner.execute('INSERT INTO "LabSession" (id, "userId", "labId", "userForkUrl") '
                  "VALUES (%s, %s, %s, %s)", (sid, ids.user(3), ids.lab(2),
                                              "https://github.com/\u212aate/lab"))
    owner.execute('INSERT INTO "GitHubRepoMapping" ("sessionId", "repoFullName", "repoUrl") '
                  "VALUES (%s, 'kate/lab', 'https://github.com/kate/lab')", (sid,))
    owner.commit()
    assert_fails(report(db), "session_identity", '"LabSession".userForkUrl', str(sid))


def test_fails_on_a_timestamp_no_restore_could_read(db, world):
    """'294276-12-31 23:59:59.9999' rounds to 294277-01-01 in a timestamp(3)
    column: stored, dumped, never restored. Planted in the frozen legacy table
    (no bound there) by a superuser: verify names the row."""
    su = _superuser(db)
    lid = uuid.uuid4()
    with su.transaction():
        su.execute('ALTER TABLE "VerificationLog" DISABLE TRIGGER USER')
        su.execute('INSERT INTO "VerificationLog" (id, "sessionId", "commitSha", "prDiff", '
                   "\"ciOutput\", \"verifiedAt\") VALUES (%s, %s, %s, 'd', '{}', "
                   "'294276-12-31 23:59:59.9999')", (lid, world["s2"], "c" * 40))
        su.execute('ALTER TABLE "VerificationLog" ENABLE TRIGGER USER')
        for t in ("verificationlog_immutable", "verificationlog_no_truncate",
                  "verificationlog_frozen"):
            su.execute(f'ALTER TABLE "VerificationLog" ENABLE ALWAYS TRIGGER {t}')
    assert_fails(report(db), "restorable_values", '"VerificationLog"', str(lid))


def test_one_active_session_index_missing_or_invalid_is_reported_with_or_without_duplicates(
        db, reference_snapshot):
    """V0013's unique index is what keeps two active sessions of one user and lab
    apart: verify reports it missing (definitions) or INVALID (indexes_valid),
    whether duplicate rows are present or not."""
    index = "LabSession_userId_labId_active_key"
    owner, app = db.connect("owner"), db.connect("app")
    from tests.builders import add_lab, add_user
    user, lab = add_user(owner, 1), add_lab(owner, 1)

    def check(*expect):
        rep = report(db, reference_snapshot=reference_snapshot)
        for name, part in expect:
            assert_fails(rep, name, index if name != "one_active_session_per_user_lab"
                         else '"LabSession"', part)
        return rep

    def new_active_session():
        sid = uuid.uuid4()
        app.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                    "VALUES (%s, %s, %s, %s)", (sid, user, lab, f"https://github.com/u/{sid}"))
        return sid

    first = new_active_session()
    assert_ok(report(db, reference_snapshot=reference_snapshot))
    # missing, no duplicates
    owner.execute(f'DROP INDEX "{index}"')
    check(("definitions", ""))
    # missing, with duplicates (nothing stops the app any more)
    second = new_active_session()
    rep = check(("definitions", ""), ("one_active_session_per_user_lab", str(second)))
    # INVALID, with duplicates: what a failed CREATE INDEX CONCURRENTLY leaves
    with pytest.raises(psycopg.errors.UniqueViolation):
        owner.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{index}" ON "LabSession" '
                      "(\"userId\", \"labId\") WHERE status IN "
                      "('IN_PROGRESS', 'STUCK', 'DEFERRED')")
    assert owner.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                         (f'"{index}"',)).fetchone() == (False,)
    check(("indexes_valid", "INVALID"), ("one_active_session_per_user_lab", str(first)))
    # INVALID, without duplicates (the duplicate ended, the index was never rebuilt)
    app.execute('UPDATE "LabSession" SET status = \'FAILED\' WHERE id = %s', (second,))
    rep = check(("indexes_valid", "INVALID"))
    assert rep.by_name("one_active_session_per_user_lab").status == "pass", \
        V.render_table(rep)


# ----------------------------------------------------------------- extensions


def _install_extensions(db) -> list[str]:
    """pg_trgm, citext and (when the server build has it) pg_stat_statements in public,
    created by the superuser as a DBA would; their names."""
    su = db.connect("superuser")
    available = {r[0] for r in su.execute("SELECT name FROM pg_available_extensions")}
    names = [n for n in ("pg_trgm", "citext", "pg_stat_statements") if n in available]
    assert {"pg_trgm", "citext"} <= set(names)
    for n in names:
        su.execute(f"CREATE EXTENSION {n} SCHEMA public")
    return names


def _assert_ok_naming_extensions(rep, names):
    assert_ok(rep)
    [f] = rep.by_name("extensions").findings
    assert sorted(r.split()[0] for r in f["rows"]) == sorted(names)
    assert rep.by_name("definitions").status == "info"


def test_extensions_installed_before_adoption_are_ignored(upstream_db, sql_root,
                                                         reference_snapshot):
    names = _install_extensions(upstream_db)
    out = io.StringIO()
    r = A.apply(upstream_db.dsn(), sql_root=sql_root, err=out)
    assert r.adopted == [CHAIN["baseline"]]
    assert "were ignored" in out.getvalue() and "pg_trgm" in out.getvalue()
    _assert_ok_naming_extensions(report(upstream_db, reference_snapshot=reference_snapshot),
                                 names)


def test_extensions_installed_after_the_chain_are_ignored(db, world, reference_snapshot):
    names = _install_extensions(db)
    _assert_ok_naming_extensions(report(db, reference_snapshot=reference_snapshot), names)
    # a grant on an extension's object is the DBA's business, not a finding
    db.connect("superuser").execute("GRANT EXECUTE ON FUNCTION similarity(text, text) "
                                    "TO forgea_app")
    assert_ok(report(db, reference_snapshot=None))


# ----------------------------------------------------------------- could not check


def test_verify_falls_back_to_a_private_temporary_cache_when_dot_harness_is_unusable(
        db, world, sql_root, reference_snapshot, pg_version, scratch_dir, monkeypatch):
    """./.harness cannot hold the cache (here: it is a file) and $HARNESS_CACHE_DIR is
    unset: the reference is kept under the temporary directory instead, and verify passes."""
    import tempfile

    from harness import chain, reference
    checkout = scratch_dir / "checkout"
    checkout.mkdir()
    (checkout / "sql").symlink_to(sql_root)
    (checkout / "pyproject.toml").write_text("")
    (checkout / ".harness").write_text("not a directory")
    tmp = scratch_dir / "tmp"
    tmp.mkdir()
    monkeypatch.chdir(checkout)
    monkeypatch.delenv(reference.CACHE_ENV, raising=False)
    monkeypatch.delenv("HARNESS_SQL_ROOT", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    fallback = tmp / f"harness-cache-{os.geteuid()}" / "reference"
    assert reference.cache_dir() == fallback
    assert (fallback.parent.stat().st_mode & 0o777) == 0o700
    files, _ = chain.scan(sql_root)
    (fallback / f"{reference._digest(pg_version, files)}.json").write_text(
        json.dumps(reference_snapshot))
    assert cli_main(["verify", "--target", db.dsn()]) == 0
    # a fallback directory someone else could write to is never used
    fallback.parent.chmod(0o777)
    with pytest.raises(LocalProblem, match="no usable cache directory"):
        reference.cache_dir()


def test_verify_without_server_binaries_exits_5_saying_it_could_not_check(
        db, world, pg_version, scratch_dir, monkeypatch, capsys):
    """No binaries for the reference's scratch server: every other check runs, the
    definitions check could not run, and the exit code says "could not check" (5),
    never FAILED (1)."""
    (scratch_dir / "bin").mkdir()
    (scratch_dir / "cache").mkdir(mode=0o700)
    monkeypatch.setenv(f"HARNESS_PG_BIN_{pg_version}", str(scratch_dir / "bin"))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(scratch_dir / "cache"))
    assert cli_main(["verify", "--target", db.dsn()]) == 5
    out = capsys.readouterr().out
    assert "could not check: no scratch PostgreSQL" in out
    assert "verify: COULD NOT CHECK (a problem on this machine, not in the database: " \
           "definitions)" in out
    assert "FAILED" not in out
    # a planted defect still fails (1): a failure outranks "could not check"
    db.connect("owner").execute('GRANT UPDATE ON "LabAttempt" TO forgea_app')
    assert cli_main(["verify", "--target", db.dsn()]) == 1


def test_an_unusable_cache_dir_set_by_the_operator_exits_5(db, scratch_dir, monkeypatch,
                                                           capsys):
    (scratch_dir / "file").write_text("")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(scratch_dir / "file"))
    assert cli_main(["verify", "--target", db.dsn()]) == 5
    out = capsys.readouterr().out
    assert "could not check: the cache directory" in out and "HARNESS_CACHE_DIR" in out
