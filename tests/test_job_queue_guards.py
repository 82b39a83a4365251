"""VerificationJob: every forbidden move or mutation is refused with its SQLSTATE.

Each refusal asserts the exact SQLSTATE (docs/architecture.md) AND that the
protected tables (jobs, attempts, sessions) are byte-for-byte unchanged.
"""

from __future__ import annotations

import time
import uuid

import pytest
from psycopg.types.json import Jsonb

from tests.builders import claim, complete, job_row, queue_world, sha
from tests.helpers import digests, raises_sqlstate

WATCHED = ("VerificationJob", "VerificationAttempt", "LabSession", "LabAttempt")


def snapshot(conn):
    return digests(conn, WATCHED)


@pytest.fixture
def world(db):
    return queue_world(db)


def make_terminal(world, status: str) -> dict:
    j = world.running_job(worker_id="w-term")
    return complete(world.worker, j["id"], status, worker_id="w-term", exit_code=1 if status != "PASSED" else 0, logs={"error": "boom"} if status == "ERROR" else {"out": "ok"})


# ----------------------------------------------------------------- transitions


TERMINAL_CHANGES = (
    """"status" = 'QUEUED', "completedAt" = NULL, "leaseOwner" = NULL, "leaseExpiresAt" = NULL""",
    """"status" = 'RUNNING', "completedAt" = NULL""",
    """"status" = CASE WHEN "status" = 'PASSED' THEN 'FAILED' ELSE 'PASSED' END::"VerificationJobStatus" """,
    """"status" = 'ERROR'""",
    """"exitCode" = 99""",
    """"errorMessage" = 'rewritten'""",
    """"completedAt" = "completedAt" + interval '1 second'""",
    """"leaseExpiresAt" = "leaseExpiresAt" + interval '1 hour'""",
)


@pytest.mark.parametrize("status", ["PASSED", "FAILED", "ERROR"])
def test_terminal_job_is_frozen_even_for_the_owner(world, status):
    done = make_terminal(world, status)
    before = snapshot(world.owner)
    for change in TERMINAL_CHANGES:
        if status == "ERROR" and change == """"status" = 'ERROR'""":
            change = """"status" = 'FAILED'"""
        with raises_sqlstate("FQ001"):
            world.owner.execute(f'UPDATE "VerificationJob" SET {change} WHERE "id" = %s',
                                (done["id"],))
    assert snapshot(world.owner) == before


def test_queued_job_cannot_jump_to_passed(world):
    jid = world.new_job()
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "status" = 'PASSED', "runCount" = 1,
               "startedAt" = timezone('UTC', now()), "completedAt" = timezone('UTC', now())
               WHERE "id" = %s""", (jid,))
    assert snapshot(world.owner) == before
    assert job_row(world.owner, jid)["status"] == "QUEUED"


def test_queued_job_cannot_be_claimed_without_a_new_run(world):
    jid = world.new_job()
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "status" = 'RUNNING', "leaseOwner" = 'x',
               "leaseExpiresAt" = timezone('UTC', now()) + interval '1 hour'
               WHERE "id" = %s""", (jid,))
    assert snapshot(world.owner) == before


def test_running_job_with_live_lease_cannot_be_requeued_by_hand(world):
    j = world.running_job()
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "status" = 'QUEUED', "leaseOwner" = NULL,
               "leaseExpiresAt" = NULL WHERE "id" = %s""", (j["id"],))
    assert snapshot(world.owner) == before


def test_owner_cannot_pass_a_running_job_under_another_workers_lease(world):
    """The queue's promise: 'Nobody can set a job to PASSED without holding its lease.'

    V0018's header claims a PASS cannot be forged 'even by the table owner
    without disabling triggers'; the guard only checks that leaseOwner is
    unchanged, so a plain owner UPDATE of a RUNNING job passes it.
    """
    j = world.running_job(worker_id="honest-worker")
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "status" = 'PASSED',
               "completedAt" = timezone('UTC', now()) WHERE "id" = %s""", (j["id"],))
    assert snapshot(world.owner) == before


# ------------------------------------------------------------ lease holder


def test_completion_by_a_non_holder_is_refused(world):
    j = world.running_job(worker_id="holder")
    before = snapshot(world.owner)
    for intruder in ("intruder", "HOLDER", "holder "):
        with raises_sqlstate("FQ002"):
            complete(world.worker, j["id"], "PASSED", worker_id=intruder)
    assert snapshot(world.owner) == before
    assert complete(world.worker, j["id"], "PASSED", worker_id="holder")["status"] == "PASSED"


def test_completion_after_lease_expiry_is_refused(world):
    j = world.running_job(worker_id="slow", lease="1 second")
    time.sleep(1.1)
    before = snapshot(world.owner)
    for status in ("PASSED", "FAILED", "ERROR"):
        with raises_sqlstate("FQ002"):
            complete(world.worker, j["id"], status, worker_id="slow")
    assert snapshot(world.owner) == before
    assert job_row(world.owner, j["id"])["status"] == "RUNNING"


def test_completion_of_a_queued_or_terminal_job_is_refused(world):
    jid = world.new_job()
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        complete(world.worker, jid, "PASSED", worker_id="anyone")
    assert snapshot(world.owner) == before
    world.owner.execute("SELECT 1")
    got = claim(world.worker, "w1")
    complete(world.worker, got["id"], "FAILED", worker_id="w1", exit_code=1)
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        complete(world.worker, got["id"], "PASSED", worker_id="w1")
    assert snapshot(world.owner) == before


# --------------------------------------------------------------- identity


@pytest.mark.parametrize("column,value", [
    ("commitSha", sha(0xDEADBEEF)),
    ("commitSha", sha(0xDEADBEEF, 64)),
    ("sessionId", None),
    ("labAttemptId", None),
    ("labVersionId", None),
    ("createdAt", "2020-01-01 00:00:00"),
    ("id", "0badc0de-0000-4000-8000-000000000001"),
])
def test_job_identity_columns_never_change(world, column, value):
    jid = world.new_job()
    other = world.new_attempt()  # a second attempt (and job source) in the same session
    if value is None:
        value = {
            "sessionId": str(world.session),
            "labAttemptId": str(other),
        }.get(column)
        if column == "sessionId":
            # another real session of another user
            from tests.builders import add_user, create_session
            value = str(create_session(world.app, add_user(world.owner), world.lab))
        if column == "labVersionId":
            world.owner.execute(
                """UPDATE "Lab" SET "repoVersion" = 'v2' WHERE "id" = %s""", (world.lab,))
            value = str(world.owner.execute(
                """SELECT "id" FROM "LabVersion" WHERE "labId" = %s
                   ORDER BY "versionNumber" DESC LIMIT 1""", (world.lab,)).fetchone()[0])
    before = snapshot(world.owner)
    with raises_sqlstate("FA002"):
        world.owner.execute(
            f'UPDATE "VerificationJob" SET "{column}" = %s WHERE "id" = %s', (value, jid))
    assert snapshot(world.owner) == before


def test_changing_commit_sha_of_a_running_job_is_refused(world):
    j = world.running_job()
    before = snapshot(world.owner)
    with raises_sqlstate("FA002"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "commitSha" = %s WHERE "id" = %s""",
            (sha(0xFACE), j["id"]))
    assert snapshot(world.owner) == before


# ---------------------------------------------------------- delete / truncate


def test_deleting_a_job_is_refused_for_every_role(world, db):
    done = make_terminal(world, "FAILED")
    queued = world.new_job()
    before = snapshot(world.owner)
    for jid in (queued, done["id"]):
        with raises_sqlstate("FA001"):
            world.owner.execute('DELETE FROM "VerificationJob" WHERE "id" = %s', (jid,))
    with raises_sqlstate("FA001"):
        world.owner.execute('DELETE FROM "VerificationJob"')
    for role in ("app", "worker", "readonly", "hostile"):
        conn = db.connect(role)
        with raises_sqlstate("42501"):
            conn.execute('DELETE FROM "VerificationJob" WHERE "id" = %s', (queued,))
    assert snapshot(world.owner) == before


def test_truncate_is_refused(world, db):
    make_terminal(world, "FAILED")
    world.new_job()
    before = snapshot(world.owner)
    # No foreign key points at VerificationJob (attempts are tied to their job
    # by the attempt guard), so TRUNCATE reaches the BEFORE TRUNCATE guard.
    with raises_sqlstate("FA001"):
        world.owner.execute('TRUNCATE "VerificationJob"')
    with raises_sqlstate("FA001"):
        world.owner.execute('TRUNCATE "VerificationJob" CASCADE')
    for role in ("app", "worker", "hostile"):
        conn = db.connect(role)
        with raises_sqlstate("42501"):
            conn.execute('TRUNCATE "VerificationJob" CASCADE')
    assert snapshot(world.owner) == before


def test_truncate_is_refused_under_replica_role(world, db):
    """The guards fire ALWAYS: session_replication_role = replica does not silence them."""
    world.new_job()
    su = db.connect("superuser")
    before = snapshot(su)
    su.execute("SET session_replication_role = replica")
    with raises_sqlstate("FA001"):
        su.execute('TRUNCATE "VerificationJob" CASCADE')
    with raises_sqlstate("FA001"):
        su.execute('DELETE FROM "VerificationJob"')
    su.execute("RESET session_replication_role")
    assert snapshot(su) == before


# ------------------------------------------------------------ direct INSERTs


def _insert_job_sql(status: str) -> str:
    terminal = status in ("PASSED", "FAILED", "ERROR")
    return (
        'INSERT INTO "VerificationJob" ("labAttemptId", "sessionId", "commitSha", '
        '"labVersionId", "status", "runCount", "leaseOwner", "leaseExpiresAt", "startedAt", '
        '"completedAt", "exitCode") '
        f"""SELECT a."id", a."sessionId", a."commitSha", s."labVersionId", '{status}', """
        f"""{1 if status != 'QUEUED' else 0}, """
        f"""{"'forger'" if status != 'QUEUED' else 'NULL'}, """
        f"""{"timezone('UTC', now()) + interval '1 hour'" if status != 'QUEUED' else 'NULL'}, """
        f"""{"timezone('UTC', now())" if status != 'QUEUED' else 'NULL'}, """
        f"""{"timezone('UTC', now())" if terminal else 'NULL'}, """
        f"""{'0' if terminal else 'NULL'} """
        'FROM "LabAttempt" AS a JOIN "LabSession" AS s ON s."id" = a."sessionId" '
        'WHERE a."id" = %s'
    )


@pytest.mark.parametrize("status", ["PASSED", "FAILED", "ERROR", "RUNNING"])
def test_direct_insert_of_a_non_queued_job_is_refused(world, db, status):
    attempt = world.new_attempt()
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        world.owner.execute(_insert_job_sql(status), (attempt,))
    for role in ("app", "worker", "readonly", "hostile"):
        with raises_sqlstate("42501"):
            db.connect(role).execute(_insert_job_sql(status), (attempt,))
    assert snapshot(world.owner) == before


def test_direct_insert_of_a_queued_job_is_refused_to_app_and_worker(world, db):
    attempt = world.new_attempt()
    before = snapshot(world.owner)
    for role in ("app", "worker"):
        with raises_sqlstate("42501"):
            db.connect(role).execute(_insert_job_sql("QUEUED"), (attempt,))
    assert snapshot(world.owner) == before


def test_direct_insert_of_a_job_on_a_stale_lab_version_is_refused(world):
    attempt = world.new_attempt()
    old_version = world.session_row()["labVersionId"]
    world.owner.execute("""UPDATE "Lab" SET "repoVersion" = 'v9' WHERE "id" = %s""", (world.lab,))
    other = world.owner.execute(
        """SELECT "id" FROM "LabVersion" WHERE "labId" = %s AND "id" <> %s""",
        (world.lab, old_version)).fetchone()[0]
    before = snapshot(world.owner)
    with raises_sqlstate("FQ001"):
        world.owner.execute(
            'INSERT INTO "VerificationJob" ("labAttemptId", "sessionId", "commitSha", '
            '"labVersionId") SELECT "id", "sessionId", "commitSha", %s FROM "LabAttempt" '
            'WHERE "id" = %s', (other, attempt))
    assert snapshot(world.owner) == before


_ATTEMPT_SQL = (
    'INSERT INTO "VerificationAttempt" ("sessionId", "commitSha", "result", "logs", '
    '"verificationJobId") VALUES (%s, %s, %s, %s, %s)'
)


def test_direct_insert_of_a_pass_attempt_is_refused(world, db):
    running = world.running_job()
    queued = world.new_job()
    q = job_row(world.owner, queued)
    before = snapshot(world.owner)
    for target in (running, q):
        for job_id in (target["id"], None):
            args = (target["sessionId"], target["commitSha"], "PASS", Jsonb({}), job_id)
            for role in ("app", "worker", "readonly", "hostile"):
                with raises_sqlstate("42501"):
                    db.connect(role).execute(_ATTEMPT_SQL, args)
            with raises_sqlstate("FQ001"):
                world.owner.execute(_ATTEMPT_SQL, args)
    assert snapshot(world.owner) == before


def test_second_attempt_for_a_completed_job_is_refused(world):
    done = make_terminal(world, "FAILED")
    before = snapshot(world.owner)
    with raises_sqlstate("23505"):
        world.owner.execute(_ATTEMPT_SQL, (done["sessionId"], done["commitSha"], "FAIL",
                                           Jsonb({}), done["id"]))
    # and a PASS for a FAILED job does not match the job's status
    with raises_sqlstate("FQ001"):
        world.owner.execute(_ATTEMPT_SQL, (done["sessionId"], done["commitSha"], "PASS",
                                           Jsonb({}), done["id"]))
    assert snapshot(world.owner) == before


def test_verified_pass_without_a_pass_attempt_is_refused(world, db):
    make_terminal(world, "FAILED")  # a FAIL attempt exists: not enough
    before = snapshot(world.owner)
    for conn in (world.owner, db.connect("app")):
        with raises_sqlstate("FL002"):
            conn.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS'
                            WHERE "id" = %s""", (world.session,))
    assert snapshot(world.owner) == before
    assert world.session_row()["status"] == "IN_PROGRESS"


# --------------------------------------------------------------- privileges


def test_worker_cannot_update_jobs_or_sessions_directly(world):
    j = world.running_job(worker_id="w1")
    before = snapshot(world.owner)
    with raises_sqlstate("42501"):
        world.worker.execute("""UPDATE "VerificationJob" SET "status" = 'PASSED',
            "completedAt" = timezone('UTC', now()) WHERE "id" = %s""", (j["id"],))
    with raises_sqlstate("42501"):
        world.worker.execute("""UPDATE "VerificationJob" SET "leaseExpiresAt" =
            "leaseExpiresAt" + interval '1 day' WHERE "id" = %s""", (j["id"],))
    with raises_sqlstate("42501"):
        world.worker.execute("""UPDATE "LabSession" SET "status" = 'STUCK'
                                WHERE "id" = %s""", (world.session,))
    with raises_sqlstate("42501"):
        world.worker.execute("""INSERT INTO "LabAttempt" ("sessionId", "commitSha",
            "deliveryId", "branch", "authorName", "changedFiles", "pushedAt")
            VALUES (%s, %s, 'd', 'main', 'x',
            '{"added": [], "modified": [], "removed": []}', now())""",
                             (world.session, sha(0xBEEF)))
    assert snapshot(world.owner) == before


def test_app_cannot_update_jobs(world):
    j = world.running_job(worker_id="w1")
    before = snapshot(world.owner)
    with raises_sqlstate("42501"):
        world.app.execute("""UPDATE "VerificationJob" SET "status" = 'PASSED',
            "completedAt" = timezone('UTC', now()) WHERE "id" = %s""", (j["id"],))
    assert snapshot(world.owner) == before


@pytest.mark.parametrize("role", ["app", "readonly", "hostile"])
def test_only_workers_can_claim_complete_or_requeue(world, db, role):
    j = world.running_job(worker_id="w1")
    world.new_job()
    conn = db.connect(role)
    before = snapshot(world.owner)
    with raises_sqlstate("42501"):
        claim(conn, "w-" + role)
    with raises_sqlstate("42501"):
        complete(conn, j["id"], "PASSED", worker_id="w1")
    with raises_sqlstate("42501"):
        conn.execute("SELECT requeue_expired_verification_jobs()")
    assert snapshot(world.owner) == before


@pytest.mark.parametrize("role", ["worker", "readonly", "hostile"])
def test_only_app_can_enqueue(world, db, role):
    attempt = world.new_attempt()
    before = snapshot(world.owner)
    with raises_sqlstate("42501"):
        db.connect(role).execute("SELECT enqueue_verification_job(%s)", (attempt,))
    assert snapshot(world.owner) == before


def test_api_functions_are_security_definer_with_pinned_search_path(world):
    rows = world.owner.execute(
        """SELECT p.proname, p.prosecdef, p.proconfig,
                  has_function_privilege('public', p.oid, 'EXECUTE')
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND p.proname IN (
             'enqueue_verification_job', 'claim_verification_job',
             'complete_verification_job', 'requeue_expired_verification_jobs')""").fetchall()
    assert len(rows) == 4
    for name, secdef, config, public_exec in rows:
        assert secdef, name
        assert any(c.startswith("search_path=pg_catalog") for c in (config or [])), name
        assert not public_exec, name


# ------------------------------------------------------------- bad input


@pytest.mark.parametrize("worker_id,lease", [
    (None, "1 minute"),
    ("", "1 minute"),
    ("x" * 201, "1 minute"),
    ("x" * 100_000, "1 minute"),
    ("tab\tworker", "1 minute"),
    ("nl\nworker", "1 minute"),
    ("w", "0 seconds"),
    ("w", "0.5 seconds"),
    ("w", "-1 minute"),
    ("w", "10 days"),
    ("w", None),
])
def test_claim_rejects_bad_input(world, worker_id, lease):
    world.new_job()
    before = snapshot(world.owner)
    with raises_sqlstate("22023"):
        world.worker.execute("SELECT * FROM claim_verification_job(%s, %s::interval)",
                             (worker_id, lease))
    assert snapshot(world.owner) == before


@pytest.mark.parametrize("status,logs", [
    ("QUEUED", {}),
    ("RUNNING", {}),
    (None, {}),
    ("PASSED", []),
    ("PASSED", "a string"),
    ("FAILED", 42),
    ("ERROR", [1, 2]),
])
def test_complete_rejects_bad_status_or_logs(world, status, logs):
    j = world.running_job(worker_id="w1")
    before = snapshot(world.owner)
    with raises_sqlstate("22023"):
        world.worker.execute(
            'SELECT * FROM complete_verification_job(%s, %s, %s::"VerificationJobStatus", 0, %s)',
            (j["id"], "w1", status, Jsonb(logs)))
    assert snapshot(world.owner) == before
    assert job_row(world.owner, j["id"])["status"] == "RUNNING"


@pytest.mark.parametrize("job_id", [None, "unknown"])
def test_complete_rejects_unknown_job(world, job_id):
    world.running_job(worker_id="w1")
    before = snapshot(world.owner)
    with raises_sqlstate("22023"):
        complete(world.worker, uuid.uuid4() if job_id else None, "PASSED", worker_id="w1")
    assert snapshot(world.owner) == before


@pytest.mark.parametrize("worker_id", [None, "", "x" * 100_000, "tab\tworker"])
def test_complete_rejects_bad_worker_id_as_bad_input(world, worker_id):
    """A worker id claim would reject (22023) is bad input to complete too (22023).

    CONTRACT section 7: one SQLSTATE per kind of refusal; bad input is 22023.
    """
    j = world.running_job(worker_id="w1")
    before = snapshot(world.owner)
    with raises_sqlstate("22023"):
        complete(world.worker, j["id"], "PASSED", worker_id=worker_id)
    assert snapshot(world.owner) == before


def test_enqueue_rejects_unknown_attempt(world):
    before = snapshot(world.owner)
    for bad in (None, uuid.uuid4()):
        with raises_sqlstate("22023"):
            world.app.execute("SELECT enqueue_verification_job(%s)", (bad,))
    assert snapshot(world.owner) == before


def test_enqueue_for_a_terminal_session_is_refused(world):
    done = make_terminal(world, "PASSED")
    assert world.session_row()["status"] == "VERIFIED_PASS"
    late = world.new_attempt()
    before = snapshot(world.owner)
    with raises_sqlstate("FL003"):
        world.app.execute("SELECT enqueue_verification_job(%s)", (late,))
    assert snapshot(world.owner) == before
    # the already-enqueued job of that session is still returned (idempotent)
    assert world.app.execute("SELECT enqueue_verification_job(%s)",
                             (done["labAttemptId"],)).fetchone()[0] == done["id"]


# ------------------------------------------- reading the call stack, as first written

# transition_api_caller() as first written (a regex with capture groups for the
# outermost frame, the whole rest of the source for what follows the statement),
# kept as the reference the faster reading must agree with on every context.
_FRAME_REFERENCE = r"""
CREATE FUNCTION pg_temp.transition_api_caller_regex(p_context text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $f$
DECLARE
    v_lines text[] := string_to_array(p_context, E'\n');
    v_last text; v_m text[]; v_fn oid; v_head text; v_stmt text; v_src text;
BEGIN
    v_last := v_lines[cardinality(v_lines)];
    v_m := regexp_match(v_last,
        '^PL/pgSQL function ([a-z_]+)\((.*)\) line ([0-9]+) at SQL statement$');
    IF v_m IS NULL OR NOT (
        v_m[1] = 'claim_verification_job' AND v_m[2] = 'text,interval'
        OR v_m[1] = 'requeue_expired_verification_jobs' AND v_m[2] = ''
        OR v_m[1] = 'complete_verification_job'
        AND starts_with(v_m[2], 'uuid,text,"VerificationJobStatus",integer,jsonb,uuid')
    ) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_proc AS q
               WHERE q.proname = v_m[1] AND q.pronamespace <> 'public'::regnamespace
                   AND NOT pg_is_other_temp_schema(q.pronamespace)) THEN
        RETURN NULL;
    END IF;
    SELECT p.oid, p.prosrc INTO v_fn, v_src FROM pg_proc AS p
    WHERE p.proname = v_m[1] AND p.pronamespace = 'public'::regnamespace AND p.prosecdef
        AND p.oid::regprocedure::text = v_m[1] || '(' || v_m[2] || ')';
    IF v_fn IS NULL THEN
        RETURN NULL;
    END IF;
    v_head := v_lines[1] || E'\nSQL statement "';
    IF NOT starts_with(p_context, v_head)
        OR substr(p_context, length(p_context) - length(v_last) - 1, 2) <> E'"\n' THEN
        RETURN NULL;
    END IF;
    v_stmt := substr(p_context, length(v_head) + 1,
        length(p_context) - length(v_head) - length(v_last) - 2);
    v_src := ltrim(array_to_string(
        (string_to_array(v_src, E'\n'))[v_m[3]::integer:], E'\n'), E' \t');
    IF v_stmt = '' OR NOT starts_with(v_src, v_stmt)
        OR substr(v_src, length(v_stmt) + 1) !~* '^\s*(;|INTO\s)' THEN
        RETURN NULL;
    END IF;
    RETURN v_m[1];
END;
$f$
"""

_GUARD_FRAME = "PL/pgSQL function verification_job_transition_guard() line 9 at GET DIAGNOSTICS"


def _api_contexts(conn) -> list[str]:
    """Contexts as the guards see them: for every statement line of the three API
    functions, the real frame, and mutations of each part of it."""
    out = []
    rows = conn.execute(
        "SELECT p.proname, p.oid::regprocedure::text, p.prosrc FROM pg_proc AS p"
        " WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN"
        " ('claim_verification_job', 'complete_verification_job',"
        "  'requeue_expired_verification_jobs')").fetchall()
    assert len(rows) == 3
    for name, signature, src in rows:
        args = signature[len(name) + 1:-1]
        lines = src.split("\n")
        for n, line in enumerate(lines, 1):
            rest = "\n".join([line.lstrip(" \t")] + lines[n:])
            if not rest[:6].upper() in ("UPDATE", "INSERT", "SELECT", "DELETE"):
                continue
            stmt = rest[:rest.index(";")].rstrip()
            cut = stmt.upper().find(" INTO ")
            for st in {stmt, stmt[:cut] if cut > 0 else stmt}:
                for frame_args, ln, tail in (
                        (args, n, " at SQL statement"), (args, n - 1, " at SQL statement"),
                        (args, n + 1, " at SQL statement"), (args + ",x", n, " at SQL statement"),
                        (args[:-1], n, " at SQL statement"), (args, n, " at RETURN"),
                        (args + ") line 1 (", n, " at SQL statement"), ("", n, " at SQL statement")):
                    outer = f"PL/pgSQL function {name}({frame_args}) line {ln}{tail}"
                    for stmt_text in (st, st[:-1], st + " ", " " + st, st + "\n/**/"):
                        out.append(f'{_GUARD_FRAME}\nSQL statement "{stmt_text}"\n{outer}')
                    out.append(f'{_GUARD_FRAME}\nSQL statement "{st}"\n{outer}\nextra')
                    out.append(f'{_GUARD_FRAME}\n{outer}')
    out += ["", "x", "\n", "PL/pgSQL function  at SQL statement",
            "PL/pgSQL function at SQL statement", "PL/pgSQL function inline_code_block line 5 "
            "at SQL statement", f"{_GUARD_FRAME}\nSQL statement \"\"\nPL/pgSQL function "
            "claim_verification_job(text,interval) line 0 at SQL statement",
            "PL/pgSQL function claim_verification_job(text,interval) line  at SQL statement",
            "PL/pgSQL function claim_verification_job(text,interval)) line 3 at SQL statement"]
    return out


def test_transition_api_caller_reads_every_frame_as_the_regex_reading_did(db):
    """The string-function reading of the outermost frame and the windowed reading of
    what follows the statement give the first reading's answer on every real API
    statement and on mutations of each part of its frame (name, arguments, line,
    statement text, extra frames)."""
    conn = db.connect("owner")
    conn.execute(_FRAME_REFERENCE)
    contexts = _api_contexts(conn)
    rows = conn.execute(
        "SELECT c, transition_api_caller(c), pg_temp.transition_api_caller_regex(c)"
        " FROM unnest(%s::text[]) AS c", (contexts,)).fetchall()
    differing = [r for r in rows if r[1] != r[2]]
    assert differing == []
    admitted = sum(1 for r in rows if r[1] is not None)
    assert admitted >= 10, admitted          # real statements are admitted ...
    assert len(rows) - admitted > 500        # ... and most mutations refused
