"""Nothing a session can set authorises a state change of a job, an attempt or a session.

A job moves RUNNING -> PASSED only inside complete_verification_job() (and
QUEUED -> RUNNING inside claim, expired leases inside requeue): the guards read
that from the server's call stack, never from a setting. Each attack below is
made by the role that could try it (the owner, who may write the tables; the
app; a worker; a superuser under session_replication_role = replica), and must
fail with the exact SQLSTATE and change nothing.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg import sql

from harness import verify as V
from tests.builders import claim, complete, job_row, queue_world
from tests.helpers import digests, raises_sqlstate

TABLES = ("VerificationJob", "VerificationAttempt", "LabSession", "AuditLog")
PASS_JOB = """UPDATE "VerificationJob" SET "status" = 'PASSED',
              "completedAt" = timezone('UTC', now()), "exitCode" = 0 WHERE "id" = %s"""
PASS_ATTEMPT = """INSERT INTO "VerificationAttempt"
                  ("sessionId", "commitSha", "result", "logs", "verificationJobId")
                  VALUES (%s, %s, 'PASS', '{}', %s)"""
COMPLETE_SIG = 'uuid, text, "VerificationJobStatus", integer, jsonb, uuid'
# the real UPDATE of complete_verification_job, word for word, as an imitation runs it
IMITATION = """
    UPDATE public."VerificationJob" AS j
    SET
        "status" = p_status,
        "completedAt" = v_now,
        "exitCode" = p_exit_code,
        "errorMessage" = CASE
            WHEN p_status = 'ERROR'
                THEN left(coalesce(p_logs ->> 'error', 'worker reported ERROR'), 2000)
        END
    WHERE j."id" = p_job_id
    RETURNING j.* INTO v_job;
"""


@pytest.fixture
def world(db):
    return queue_world(db)


@pytest.fixture
def running(world):
    """A job claimed by worker 'honest' (lease 1 hour), nothing completed yet."""
    return world.running_job(worker_id="honest", lease="1 hour")


@pytest.fixture
def unchanged(world):
    before = digests(world.owner, TABLES)
    yield
    assert digests(world.owner, TABLES) == before, "the attack changed data"


def _job_unchanged(world, job):
    row = job_row(world.owner, job["id"])
    assert row["status"] == "RUNNING" and row["completedAt"] is None
    assert world.session_row()["status"] == "IN_PROGRESS"


def _forge(conn, world, job):
    """The red team's chain: job PASSED, a PASS attempt, the session VERIFIED_PASS."""
    conn.execute(PASS_JOB, (job["id"],))
    conn.execute(PASS_ATTEMPT, (job["sessionId"], job["commitSha"], job["id"]))
    conn.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS' WHERE "id" = %s""",
                 (world.session,))


@pytest.mark.parametrize("how", [
    "SET forgea.completing_job = '{job}'",
    "SET SESSION forgea.completing_job = '{job}'",
    "SELECT set_config('forgea.completing_job', '{job}', false)",
])
def test_session_setting_does_not_authorise_a_pass(world, running, unchanged, how):
    world.owner.execute(how.format(job=running["id"]))
    with raises_sqlstate("FQ001"):
        _forge(world.owner, world, running)
    _job_unchanged(world, running)


@pytest.mark.parametrize("how", [
    "SET LOCAL forgea.completing_job = '{job}'",
    "SELECT set_config('forgea.completing_job', '{job}', true)",
])
def test_transaction_setting_does_not_authorise_a_pass(world, running, unchanged, how):
    with raises_sqlstate("FQ001"):
        with world.owner.transaction():
            world.owner.execute(how.format(job=running["id"]))
            _forge(world.owner, world, running)
    _job_unchanged(world, running)


def test_setting_given_at_connect_does_not_authorise_a_pass(world, running, unchanged):
    conn = psycopg.connect(world.db.dsn("owner"), autocommit=True,
                           options=f"-c forgea.completing_job={running['id']}")
    world.db._conns.append(conn)
    assert conn.execute("SHOW forgea.completing_job").fetchone()[0] == str(running["id"])
    with raises_sqlstate("FQ001"):
        _forge(conn, world, running)
    _job_unchanged(world, running)


def test_superuser_as_owner_under_replica_role_cannot_pass_a_job(world, running, unchanged):
    su = world.db.connect("superuser")
    owner = world.owner.execute("SELECT current_user").fetchone()[0]
    su.execute("SET session_replication_role = replica")
    su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
    su.execute("SELECT set_config('forgea.completing_job', %s, false)", (str(running["id"]),))
    with raises_sqlstate("FQ001"):
        _forge(su, world, running)
    su.execute("RESET ROLE")
    with raises_sqlstate("FQ001"):
        _forge(su, world, running)
    _job_unchanged(world, running)


@pytest.mark.parametrize("role, code", [("app", "42501"), ("worker", "42501")])
def test_app_and_worker_cannot_write_a_job_whatever_they_set(world, running, unchanged,
                                                            role, code):
    conn = world.db.connect(role)
    conn.execute("SELECT set_config('forgea.completing_job', %s, false)", (str(running["id"]),))
    with raises_sqlstate(code):
        conn.execute(PASS_JOB, (running["id"],))
    with raises_sqlstate(code):
        conn.execute(PASS_ATTEMPT, (running["sessionId"], running["commitSha"], running["id"]))
    _job_unchanged(world, running)


def test_imitation_of_the_api_in_a_do_block_is_refused(world, running, unchanged):
    body = ("DO $do$ DECLARE v_job \"VerificationJob\"; v_now timestamp(3) := "
            "timezone('UTC', clock_timestamp()); p_status \"VerificationJobStatus\" := "
            "'PASSED'; p_exit_code integer := 0; p_logs jsonb := '{}'; p_job_id uuid := "
            f"'{running['id']}'; BEGIN{IMITATION}END $do$")
    with raises_sqlstate("FQ001"):
        world.owner.execute(body)
    _job_unchanged(world, running)


def test_statement_text_that_fakes_the_api_frame_is_refused(world, running, unchanged):
    """The context carries the statement's text; a text that contains the API's frame
    line does not make the API the outermost frame."""
    frame = ('PL/pgSQL function complete_verification_job(uuid,text,"VerificationJobStatus",'
             'integer,jsonb,uuid) line 97 at SQL statement')
    body = (f"DO $do$ BEGIN UPDATE \"VerificationJob\" SET \"status\" = 'PASSED' "
            f"WHERE \"id\" = '{running['id']}' /* \"\n{frame}\n */; END $do$")
    with raises_sqlstate("FQ001"):
        world.owner.execute(body)
    _job_unchanged(world, running)


@pytest.mark.parametrize("schema", ["evil", "pg_temp"])
def test_same_named_function_in_another_schema_is_refused(world, running, unchanged, schema):
    owner = world.owner
    if schema == "evil":
        owner.execute("CREATE SCHEMA evil")
    fn = f"{schema}.complete_verification_job"
    try:
        owner.execute(
            f"CREATE FUNCTION {fn}(p_job_id uuid, p_worker_id text, "
            'p_status "VerificationJobStatus", p_exit_code integer, p_logs jsonb, '
            "p_lease_token uuid DEFAULT NULL) RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
            f"SET search_path = {schema}, pg_catalog, public AS $fn$ DECLARE "
            "v_job public.\"VerificationJob\"; v_now timestamp(3) := "
            f"timezone('UTC', clock_timestamp()); BEGIN{IMITATION}END $fn$")
        owner.execute(f"SET search_path = {schema}, public")
        with raises_sqlstate("FQ001"):
            owner.execute(f"SELECT {fn}(%s, 'honest', 'PASSED', 0, '{{}}')", (running["id"],))
    finally:
        owner.execute("RESET search_path")
        owner.execute(f"DROP FUNCTION {fn}({COMPLETE_SIG})")
        if schema == "evil":
            owner.execute("DROP SCHEMA evil")
    _job_unchanged(world, running)


def test_calling_the_guards_helper_directly_authorises_nothing(world, running, unchanged):
    owner = world.owner
    forged = ('PL/pgSQL function verification_job_transition_guard() line 1 at GET '
              'DIAGNOSTICS\nSQL statement "x"\nPL/pgSQL function claim_verification_job('
              'text,interval) line 43 at SQL statement')
    assert owner.execute("SELECT transition_api_caller(%s)", (forged,)).fetchone()[0] is None
    with raises_sqlstate("FQ001"):
        with owner.transaction():
            owner.execute("SELECT transition_api_caller(%s)", (forged,))
            owner.execute(PASS_JOB, (running["id"],))
    for role in ("app", "worker", "readonly"):
        with raises_sqlstate("42501"):
            world.db.connect(role).execute("SELECT transition_api_caller(%s)", (forged,))
    _job_unchanged(world, running)


def test_pass_attempt_inserted_directly_is_refused(world, running, unchanged):
    with raises_sqlstate("FQ001"):
        world.owner.execute(PASS_ATTEMPT, (running["sessionId"], running["commitSha"],
                                           running["id"]))
    _job_unchanged(world, running)


def test_verified_pass_set_directly_is_refused(world, running, unchanged):
    for conn in (world.owner, world.app):
        with raises_sqlstate("FL002"):
            conn.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS'
                            WHERE "id" = %s""", (world.session,))
    _job_unchanged(world, running)


def test_expired_lease_is_requeued_only_by_the_api(world):
    job = world.running_job(worker_id="slow", lease="1 second")
    time.sleep(1.1)
    before = digests(world.owner, TABLES)
    for change in ("""\"status\" = 'QUEUED', "leaseOwner" = NULL, "leaseExpiresAt" = NULL""",
                   """\"status\" = 'ERROR', "completedAt" = timezone('UTC', now())"""):
        with raises_sqlstate("FQ001"):
            world.owner.execute(f'UPDATE "VerificationJob" SET {change} WHERE "id" = %s',
                                (job["id"],))
    assert digests(world.owner, TABLES) == before
    assert world.worker.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 1
    assert job_row(world.owner, job["id"])["status"] == "QUEUED"


def test_direct_claim_by_the_owner_is_refused(world):
    jid = world.new_job()
    before = digests(world.owner, TABLES)
    with raises_sqlstate("FQ001"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "status" = 'RUNNING', "runCount" = 1,
               "leaseOwner" = 'owner', "startedAt" = timezone('UTC', now()),
               "leaseExpiresAt" = timezone('UTC', now()) + interval '1 hour',
               "leaseTokenHash" = sha256('known'::bytea) WHERE "id" = %s""", (jid,))
    assert digests(world.owner, TABLES) == before


@pytest.mark.parametrize("how", ["setting", "argument"])
def test_another_worker_cannot_complete_with_a_token_it_was_not_handed(world, running,
                                                                      unchanged, how):
    """forgea.lease_tokens is a connection's own list: a guessed entry is refused."""
    other = world.db.connect("worker")
    guess = uuid.uuid4()
    if how == "setting":
        other.execute("SELECT set_config('forgea.lease_tokens', %s, false)",
                      (f"{running['id']}:{guess}",))
        token = None
    else:
        token = guess
    with raises_sqlstate("FQ002"):
        complete(other, running["id"], "PASSED", worker_id="honest", lease_token=token)
    _job_unchanged(world, running)


def test_the_api_still_completes_and_verify_agrees(world, db):
    job = world.running_job(worker_id="w-ok")
    done = complete(world.worker, job["id"], "PASSED", worker_id="w-ok")
    assert done["status"] == "PASSED"
    assert world.session_row()["status"] == "VERIFIED_PASS"
    assert world.owner.execute(
        'SELECT "result"::text FROM "VerificationAttempt" WHERE "verificationJobId" = %s',
        (job["id"],)).fetchone()[0] == "PASS"
    rep = V.verify(db.dsn("owner"))
    assert rep.ok, V.render_table(rep)


def test_trigger_slipped_into_a_real_completion_cannot_pass_another_job(world, running):
    """The owner adds a trigger that, during an honest completion, passes another
    running job: the extra frames between the API and the statement are refused, and
    the whole completion with it."""
    from tests.builders import add_attempt, add_user, create_session, enqueue
    owner = world.owner
    other_session = create_session(world.app, add_user(owner), world.lab)
    enqueue(world.app, add_attempt(owner, other_session))
    target = claim(world.db.connect("worker"), "victim", "1 hour")
    before = digests(owner, TABLES)
    owner.execute(
        "CREATE FUNCTION public.zz_slip() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        "UPDATE \"VerificationJob\" SET \"status\" = 'PASSED' WHERE \"id\" = "
        f"'{target['id']}'; RETURN NEW; END $fn$")
    owner.execute('CREATE TRIGGER zz_slip AFTER INSERT ON "VerificationAttempt" '
                  "FOR EACH ROW EXECUTE FUNCTION public.zz_slip()")
    try:
        with raises_sqlstate("FQ001"):
            complete(world.worker, running["id"], "FAILED", worker_id="honest",
                     lease_token=running["leaseToken"])
    finally:
        owner.execute('DROP TRIGGER zz_slip ON "VerificationAttempt"')
        owner.execute("DROP FUNCTION public.zz_slip()")
    assert digests(owner, TABLES) == before
    assert job_row(owner, target["id"])["status"] == "RUNNING"
    _job_unchanged(world, running)


FULL_SIG = 'uuid,text,"VerificationJobStatus",integer,jsonb,uuid,bytea,text,timestamptz'


def test_owner_impostor_that_drops_itself_is_caught_only_by_attestations(world, running, db):
    """The owner's transient impostor: a copy of complete_verification_job in schema
    evil (rendered unqualified: evil first on its search_path) with the lease-owner,
    token and expiry checks turned into IF false on the same lines, whose first
    statement drops it. When the guards look, the outermost frame names the API, no
    same-named function exists elsewhere, and each statement is the real source's at
    its line: they accept (a definition change undone within the transaction, which
    no point-in-time check sees; docs/security.md). The forged PASS names the honest
    worker. verify without keys passes; verify --worker-keys fails naming the job."""
    from harness import attest
    owner = world.owner
    src = owner.execute("SELECT prosrc FROM pg_proc WHERE oid = "
                        f"'public.complete_verification_job({FULL_SIG})'::regprocedure"
                        ).fetchone()[0]
    lines = src.count("\n")
    src = src.replace("\nBEGIN\n", "\nBEGIN EXECUTE 'DROP FUNCTION "
                      f"evil.complete_verification_job({FULL_SIG})';\n", 1)
    for check in ('IF v_job."leaseOwner" IS DISTINCT FROM p_worker_id THEN',
                  'IF v_job."leaseTokenHash" IS NOT NULL THEN',
                  'IF v_job."leaseExpiresAt" < v_now THEN'):
        assert check in src
        src = src.replace(check, "IF false THEN", 1)
    assert src.count("\n") == lines
    owner.execute("CREATE SCHEMA evil")
    owner.execute(
        "CREATE FUNCTION evil.complete_verification_job(p_job_id uuid, p_worker_id text, "
        'p_status "VerificationJobStatus", p_exit_code integer, p_logs jsonb, '
        "p_lease_token uuid DEFAULT NULL, p_attestation_signature bytea DEFAULT NULL, "
        "p_attestation_key_id text DEFAULT NULL, p_completed_at timestamptz DEFAULT NULL) "
        'RETURNS SETOF public."VerificationJob" LANGUAGE plpgsql '
        "SET search_path = evil, pg_catalog, public, pg_temp AS $fn$" + src + "$fn$")
    got = owner.execute("SELECT status::text, \"leaseOwner\" FROM "
                        "evil.complete_verification_job(%s, 'mallory', 'PASSED', 0, '{}')",
                        (running["id"],)).fetchall()
    owner.execute("DROP SCHEMA evil")
    assert got == [("PASSED", "honest")]            # the guards accepted the impostor
    assert world.session_row()["status"] == "VERIFIED_PASS"
    rep = V.verify(db.dsn("owner"))
    assert rep.ok, V.render_table(rep)             # no definition left to see
    _key, pub = attest.generate()
    keys = {"worker-1": attest.parse_worker_keys({"worker-1": pub})["worker-1"]}
    c = V.verify(db.dsn("owner"), worker_keys=keys).by_name("worker_attestations")
    assert c.status == "fail" and any(
        "no attestation" in f["message"] and f"job {running['id']}" in f.get("rows", [])
        for f in c.findings), c.findings
