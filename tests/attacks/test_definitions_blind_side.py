"""Objects planted by the owner where the definitions check used to be blind:
operators, casts and aggregates for the pack's types, functions in other
schemas that shadow the pack's names, objects of the database as a whole.

Two properties: the guards keep their meaning (a planted ``=`` for
"VerificationResult" that is always true does not let a session without a PASS
attempt become VERIFIED_PASS: FL002), and ``harness verify`` fails naming
the planted object. Extension members (pg_trgm, citext) stay ignored.
"""

from __future__ import annotations

import pytest

from harness import verify as V
from tests.builders import seed_world
from tests.helpers import digests, raises_sqlstate

#: an always-true "=" for the attempts' result type, found before pg_catalog's
#: anyenum "=" by operator resolution (exact argument types win) on a search_path
#: with public in it
PLANT_OPERATOR = """
CREATE FUNCTION public.result_eq_always("VerificationResult", "VerificationResult")
    RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = "VerificationResult", RIGHTARG = "VerificationResult",
                          FUNCTION = public.result_eq_always);
CREATE FUNCTION public.status_eq_always("LabStatus", "LabStatus")
    RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR public.= (LEFTARG = "LabStatus", RIGHTARG = "LabStatus",
                          FUNCTION = public.status_eq_always);
CREATE FUNCTION public.status_ne_always("LabStatus", "LabStatus")
    RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR public.<> (LEFTARG = "LabStatus", RIGHTARG = "LabStatus",
                           FUNCTION = public.status_ne_always);
"""

#: casts of the pack's enums to text that always say "in progress" / "PASS"
PLANT_CAST = """
CREATE FUNCTION public.status_text("LabStatus") RETURNS text LANGUAGE sql IMMUTABLE
    AS $$SELECT 'IN_PROGRESS'$$;
CREATE CAST ("LabStatus" AS text) WITH FUNCTION public.status_text("LabStatus");
CREATE FUNCTION public.job_status_text("VerificationJobStatus") RETURNS text
    LANGUAGE sql IMMUTABLE AS $$SELECT 'PASSED'$$;
CREATE CAST ("VerificationJobStatus" AS text)
    WITH FUNCTION public.job_status_text("VerificationJobStatus");
"""

PLANT_AGGREGATE = """
CREATE FUNCTION public.pick(uuid, uuid) RETURNS uuid LANGUAGE sql IMMUTABLE AS 'SELECT $2';
CREATE AGGREGATE public.max(uuid) (SFUNC = public.pick, STYPE = uuid);
"""

PLANT_SHADOW = """
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.canonical_repo_url(url text) RETURNS text LANGUAGE sql
    AS 'SELECT url';
"""


def _pass_attempt_count(conn, sid) -> int:
    return conn.execute('SELECT count(*) FROM "VerificationAttempt" WHERE "sessionId" = %s '
                        "AND \"result\"::text = 'PASS'", (sid,)).fetchone()[0]


def _fails_naming(rep: V.Report, *parts: str) -> None:
    c = rep.by_name("definitions")
    assert c.status == "fail", V.render_table(rep)
    objs = " ".join(f["object"] + " " + f["message"] for f in c.findings
                    if f["severity"] == "fail")
    for p in parts:
        assert p in objs, V.render_table(rep)


@pytest.mark.parametrize("plant", [PLANT_OPERATOR, PLANT_CAST, PLANT_OPERATOR + PLANT_CAST],
                         ids=["operator", "cast", "both"])
def test_planted_operators_and_casts_do_not_change_what_the_lifecycle_guard_means(db, plant):
    world = seed_world(db)
    owner, app = db.connect("owner"), db.connect("app")
    owner.execute(plant)
    sid = world["s2"]                       # no PASS attempt
    assert _pass_attempt_count(owner, sid) == 0
    before = digests(owner, ("LabSession", "VerificationAttempt", "VerificationJob"))
    with raises_sqlstate("FL002"):
        app.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS' WHERE "id" = %s""",
                    (sid,))
    # a terminal session still cannot move (FL001), whatever "=" or ::text now say
    with raises_sqlstate("FL001"):
        app.execute("""UPDATE "LabSession" SET "status" = 'IN_PROGRESS' WHERE "id" = %s""",
                    (world["s1"],))
    # and a legal move is still legal
    app.execute("""UPDATE "LabSession" SET "status" = 'STUCK' WHERE "id" = %s""", (sid,))
    app.execute("""UPDATE "LabSession" SET "status" = 'IN_PROGRESS' WHERE "id" = %s""", (sid,))
    after = digests(owner, ("VerificationAttempt", "VerificationJob"))
    assert after == {k: v for k, v in before.items() if k != "LabSession"}


def test_a_planted_operator_does_not_let_a_failed_attempt_count_as_a_pass_attempt(db):
    """The attempt guard: an attempt whose result disagrees with its job is refused."""
    world = seed_world(db)
    owner = db.connect("owner")
    owner.execute(PLANT_OPERATOR + PLANT_CAST)
    failed_job = world["jobs"][1]
    job = owner.execute('SELECT "sessionId", "commitSha" FROM "VerificationJob" '
                        'WHERE "id" = %s', (failed_job,)).fetchone()
    before = digests(owner, ("VerificationAttempt",))
    with raises_sqlstate("FQ001"):
        owner.execute('INSERT INTO "VerificationAttempt" ("id", "sessionId", "commitSha", '
                      '"result", "verificationJobId") VALUES (gen_random_uuid(), %s, %s, '
                      "'PASS', %s)", (job[0], job[1], failed_job))
    assert digests(owner, ("VerificationAttempt",)) == before


@pytest.mark.parametrize("plant, named", [
    (PLANT_OPERATOR, ['operator public.=(public."VerificationResult",'
                      'public."VerificationResult")',
                      "function result_eq_always"]),
    (PLANT_CAST, ['cast (public."LabStatus" AS pg_catalog.text)',
                  'cast (public."VerificationJobStatus" AS pg_catalog.text)']),
    (PLANT_AGGREGATE, ["routine public.max(pg_catalog.uuid)"]),
    (PLANT_SHADOW, ["routine shadow.canonical_repo_url(pg_catalog.text)", "schema shadow"]),
    ("CREATE FUNCTION forgea_archive.lab_status_is_active(text) RETURNS boolean "
     "LANGUAGE sql AS 'SELECT true'", ["routine forgea_archive.lab_status_is_active(pg_catalog.text)"]),
    ("CREATE TABLE forgea_archive.\"LabSession_V0007_20260101T000000000\" (\"row\" jsonb); "
     "CREATE VIEW forgea_archive.v AS SELECT 1 AS one",
     ["relation forgea_archive.v"]),
    ('CREATE COLLATION public.planted FROM "C"',
     ["collation public.planted"]),
    ("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO forgea_app",
     ["default privileges"]),
    ('CREATE RULE no_delete AS ON DELETE TO "GitHubPushDelivery" DO INSTEAD NOTHING',
     ['rule no_delete on public."GitHubPushDelivery"']),
    ("CREATE TEXT SEARCH CONFIGURATION public.planted (COPY = pg_catalog.simple)",
     ["text search configuration public.planted"]),
])
def test_verify_names_an_object_the_owner_planted(db, reference_snapshot, plant, named):
    db.connect("owner").execute(plant)
    rep = V.verify(db.dsn("owner"), reference_snapshot=reference_snapshot)
    assert rep.exit_code == 1
    _fails_naming(rep, *named)


def test_verify_names_an_event_trigger_a_superuser_planted(db, reference_snapshot):
    su = db.connect("superuser")
    su.execute("CREATE FUNCTION public.noop_evt() RETURNS event_trigger LANGUAGE plpgsql "
               "AS 'BEGIN END'")
    su.execute("CREATE EVENT TRIGGER planted ON ddl_command_start "
               "EXECUTE FUNCTION public.noop_evt()")
    try:
        rep = V.verify(db.dsn("owner"), reference_snapshot=reference_snapshot)
        _fails_naming(rep, "event trigger planted", "function noop_evt()")
    finally:
        su.execute("DROP EVENT TRIGGER planted")


def test_extension_members_stay_ignored(db, reference_snapshot):
    su = db.connect("superuser")
    su.execute("CREATE EXTENSION pg_trgm")
    su.execute("CREATE EXTENSION citext")
    rep = V.verify(db.dsn("owner"), reference_snapshot=reference_snapshot)
    assert rep.by_name("definitions").status == "info", V.render_table(rep)
    assert rep.exit_code == 0, V.render_table(rep)


#: "=" always true and "<>" always false for the job status: every job looks RUNNING,
#: every completion looks PASSED
PLANT_JOB_OPERATORS = """
CREATE FUNCTION public.job_eq_always("VerificationJobStatus", "VerificationJobStatus")
    RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = "VerificationJobStatus", RIGHTARG = "VerificationJobStatus",
                          FUNCTION = public.job_eq_always);
CREATE FUNCTION public.job_ne_never("VerificationJobStatus", "VerificationJobStatus")
    RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR public.<> (LEFTARG = "VerificationJobStatus",
                           RIGHTARG = "VerificationJobStatus", FUNCTION = public.job_ne_never);
"""


def test_planted_job_status_operators_do_not_change_what_a_completion_records(db):
    """A FAILED completion stays a FAIL attempt on a session that stays IN_PROGRESS; a
    finished job cannot be completed again."""
    owner = db.connect("owner")
    owner.execute(PLANT_JOB_OPERATORS + PLANT_CAST)
    world = seed_world(db)                  # one job PASSED, one FAILED
    # read with format(): the planted cast now answers every ::text of a LabStatus
    pairs = owner.execute(
        'SELECT format(\'%s\', j."status"), format(\'%s\', a."result") FROM "VerificationJob" j '
        'JOIN "VerificationAttempt" a ON a."verificationJobId" = j."id" ORDER BY 1').fetchall()
    assert pairs == [("FAILED", "FAIL"), ("PASSED", "PASS")]
    status = dict(owner.execute('SELECT "id", format(\'%s\', "status") FROM "LabSession"'
                                ).fetchall())
    assert status[world["s2"]] == "IN_PROGRESS"     # no attempt: no pass
    from tests.builders import complete
    before = digests(owner, ("VerificationAttempt", "VerificationJob", "LabSession"))
    with raises_sqlstate("FQ001"):
        complete(db.connect("worker"), world["jobs"][1], "PASSED", worker_id="w2")
    assert digests(owner, ("VerificationAttempt", "VerificationJob", "LabSession")) == before


_SIG6 = 'uuid, text, "VerificationJobStatus", integer, jsonb, uuid'
_OVERLOAD_BODY = """
    UPDATE public."VerificationJob" AS j
    SET "status" = p_status, "completedAt" = timezone('UTC', now()), "exitCode" = 0
    WHERE j."id" = p_job_id;
"""


@pytest.mark.parametrize("how", ["replace_the_check", "overload_in_public"])
def test_owner_left_in_place_change_to_the_call_stack_check_is_named(db, reference_snapshot,
                                                                     how):
    """The owner leaves in place what lets it forge: transition_api_caller replaced
    to name the completion whatever the stack, or an overload of
    complete_verification_job in public (SECURITY DEFINER, an extra argument: it
    renders unqualified and no other schema holds the name, so the check accepts
    its statement). The forged PASSED job goes through; verify names the object."""
    from tests.builders import queue_world
    w = queue_world(db)
    job = w.running_job(worker_id="honest", lease="1 hour")
    owner = w.owner
    if how == "replace_the_check":
        owner.execute("CREATE OR REPLACE FUNCTION transition_api_caller(p_context text) "
                      "RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, "
                      "public, pg_temp AS $$ SELECT 'complete_verification_job'::text $$")
        owner.execute("""UPDATE "VerificationJob" SET "status" = 'PASSED', "completedAt" =
                         timezone('UTC', now()), "exitCode" = 0 WHERE "id" = %s""",
                      (job["id"],))
        named = ["transition_api_caller"]
    else:
        owner.execute(
            f"CREATE FUNCTION public.complete_verification_job(p_job_id uuid, p_worker_id "
            'text, p_status "VerificationJobStatus", p_exit_code integer, p_logs jsonb, '
            "p_lease_token uuid, p_extra text) RETURNS void LANGUAGE plpgsql SECURITY "
            "DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$ BEGIN"
            f"{_OVERLOAD_BODY}END $fn$")
        owner.execute("SELECT public.complete_verification_job(%s, 'x', 'PASSED', 0, "
                      "'{}', NULL, 'x')", (job["id"],))
        named = ["complete_verification_job"]
    assert owner.execute('SELECT "status"::text FROM "VerificationJob" WHERE "id" = %s',
                         (job["id"],)).fetchone()[0] == "PASSED"     # the forgery itself
    rep = V.verify(db.dsn("owner"), reference_snapshot=reference_snapshot)
    assert rep.exit_code == 1
    _fails_naming(rep, *named)
