"""Privilege attacks: every forbidden write, DDL, trigger switch, role switch,
secret read and function call, as forgea_app / forgea_worker / forgea_readonly
members and as a role with no membership at all. Each must fail with the
documented SQLSTATE and change nothing."""

from __future__ import annotations

import psycopg
import pytest

from harness.verify import EXPECTED_FUNCTION_EXECUTE, EXPECTED_TABLE_PRIVILEGES
from tests.helpers import raises_sqlstate

ROLES = {"app": "forgea_app", "worker": "forgea_worker", "readonly": "forgea_readonly",
         "hostile": None}
PROTECTED = ("LabVersion", "VerificationLog", "VerificationAttempt", "AuditLog",
             "ResumeBullet", "LabAttempt", "VerificationJob", "GitHubRepoMapping",
             "GitHubPushDelivery")
DML = {
    "INSERT": 'INSERT INTO "{t}" DEFAULT VALUES',
    "UPDATE": 'UPDATE "{t}" SET "id" = "id"',
    "DELETE": 'DELETE FROM "{t}"',
    "TRUNCATE": 'TRUNCATE "{t}"',
    "TRUNCATE CASCADE": 'TRUNCATE "{t}" CASCADE',
}


def _forbidden_dml():
    for rk, group in ROLES.items():
        allowed = EXPECTED_TABLE_PRIVILEGES.get(group, {}) if group else {}
        for t in PROTECTED:
            for op in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                if op not in allowed.get(t, ()):
                    yield pytest.param(rk, t, op, id=f"{rk}-{t}-{op}")


@pytest.mark.parametrize("role,table,op", list(_forbidden_dml()))
def test_forbidden_dml(world_db, snapshot, role, table, op):
    conn = world_db.connect(role)
    with raises_sqlstate("42501"):
        conn.execute(DML[op].format(t=table))


# the owner itself cannot rewrite the ledgers: the guards refuse (ALWAYS)
OWNER_REFUSALS = [
    ("LabVersion", "UPDATE", "FA001"), ("LabVersion", "DELETE", "FA001"),
    ("LabVersion", "TRUNCATE", "0A000"),   # referenced by foreign keys: refused earlier
    ("VerificationAttempt", "UPDATE", "FA001"), ("VerificationAttempt", "DELETE", "FA001"),
    ("VerificationAttempt", "TRUNCATE", "FA001"),
    ("LabAttempt", "UPDATE", "FA001"), ("LabAttempt", "DELETE", "FA001"),
    ("LabAttempt", "TRUNCATE", "0A000"),
    ("GitHubPushDelivery", "UPDATE", "FA001"), ("GitHubPushDelivery", "DELETE", "FA001"),
    ("GitHubPushDelivery", "TRUNCATE", "FA001"),
    ("GitHubRepoMapping", "DELETE", "FA001"), ("GitHubRepoMapping", "TRUNCATE", "FA001"),
    ("VerificationJob", "DELETE", "FA001"), ("VerificationJob", "TRUNCATE", "0A000|FA001"),  # FA001 once no FK references it
    # CASCADE reaches the ledgers, whose TRUNCATE guards refuse the whole statement
    ("LabVersion", "TRUNCATE CASCADE", "FA001"), ("LabAttempt", "TRUNCATE CASCADE", "FA001"),
    ("VerificationJob", "TRUNCATE CASCADE", "FA001"), ("User", "TRUNCATE CASCADE", "FA001"),
    ("Lab", "TRUNCATE CASCADE", "FA001"), ("LabSession", "TRUNCATE CASCADE", "FA001"),
    # legacy guards of the production baseline keep their own codes
    ("VerificationLog", "UPDATE", "P0001"), ("VerificationLog", "DELETE", "P0001"),
    ("VerificationLog", "TRUNCATE", "FA001"),
    ("AuditLog", "UPDATE", "P0001"), ("AuditLog", "DELETE", "P0001"),
    ("AuditLog", "TRUNCATE", "FA001"),
    ("ResumeBullet", "UPDATE", "P0001"), ("ResumeBullet", "DELETE", "P0001"),
    ("ResumeBullet", "TRUNCATE", "FA001"),
]


@pytest.mark.parametrize("who", ["owner", "superuser-replica"])
@pytest.mark.parametrize("table,op,code", OWNER_REFUSALS,
                         ids=[f"{t}-{o}" for t, o, _ in OWNER_REFUSALS])
def test_owner_and_replica_superuser_cannot_rewrite_ledgers(world_db, snapshot, who, table,
                                                             op, code):
    conn = world_db.connect("owner" if who == "owner" else "superuser")
    if who != "owner":
        conn.execute("SET session_replication_role = replica")
    with pytest.raises(psycopg.Error) as e:
        conn.execute(DML[op].format(t=table))
    assert e.value.sqlstate in code.split("|"), f"{e.value.sqlstate}: {e.value}"


def test_owner_cannot_forge_job_or_attempt(world_db, snapshot):
    conn = world_db.connect("owner")
    with raises_sqlstate("FQ001"):
        conn.execute("""UPDATE "VerificationJob" SET status = 'PASSED',
                        "completedAt" = now() WHERE status = 'QUEUED'""")
    with raises_sqlstate("FQ001"):
        conn.execute("""INSERT INTO "VerificationAttempt" ("sessionId", "commitSha",
                        result, logs, "verificationJobId")
                        SELECT "sessionId", "commitSha", 'PASS', '{}', id
                        FROM "VerificationJob" WHERE status = 'QUEUED' LIMIT 1""")
    with raises_sqlstate("FL002"):
        conn.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS'
                        WHERE id = %s""", (world_db.world["s2"],))


DDL = {
    "create-table": 'CREATE TABLE public."Evil" (id int)',
    "create-function": "CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "create-schema": "CREATE SCHEMA evil",
    "alter-table": 'ALTER TABLE "LabAttempt" ADD COLUMN evil int',
    "drop-table": 'DROP TABLE "LabAttempt"',
    "disable-trigger": 'ALTER TABLE "LabAttempt" DISABLE TRIGGER labattempt_append_only',
    "disable-trigger-all": 'ALTER TABLE "AuditLog" DISABLE TRIGGER ALL',
    "drop-trigger": 'DROP TRIGGER labattempt_append_only ON "LabAttempt"',
    "replace-guard": ("CREATE OR REPLACE FUNCTION public.forbid_ledger_mutation() "
                      "RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'"),
    "alter-function": ("ALTER FUNCTION record_push(text, bigint, text, text, text, "
                       "timestamptz, jsonb) RESET search_path"),
    "replication-role": "SET session_replication_role = replica",
    "set-role-owner": "SET ROLE forgea_owner",
    "set-session-authorization": "SET SESSION AUTHORIZATION forgea_owner",
    "grant-owner-role": "GRANT forgea_owner TO CURRENT_USER",
    "create-archive": 'CREATE TABLE forgea_archive."Evil" (id int)',
    "read-archive-schema": "SELECT count(*) FROM forgea_archive.nothing",
}


@pytest.mark.parametrize("role", list(ROLES))
def test_grant_to_self_grants_nothing(world_db, snapshot, role):
    """GRANT by a non-owner is only a WARNING in PostgreSQL: prove nothing was granted."""
    conn = world_db.connect(role)
    for stmt in ('GRANT UPDATE, DELETE, TRUNCATE ON "LabAttempt" TO CURRENT_USER',
                 'GRANT ALL ON "VerificationJob" TO PUBLIC'):
        try:
            conn.execute(stmt)          # a WARNING for roles with some privilege
        except psycopg.errors.InsufficientPrivilege:
            pass                        # an error for roles with none
    for t, p in (("LabAttempt", "UPDATE"), ("LabAttempt", "TRUNCATE"),
                 ("VerificationJob", "UPDATE"), ("VerificationJob", "INSERT")):
        assert not conn.execute("SELECT has_table_privilege(current_user, %s, %s)",
                                (f'"{t}"', p)).fetchone()[0]


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("attack", list(DDL))
def test_ddl_and_escalation(world_db, snapshot, role, attack):
    conn = world_db.connect(role)
    with raises_sqlstate("42501"):
        conn.execute(DDL[attack])


SECRETS = [
    'SELECT access_token FROM "Account"',
    'SELECT refresh_token FROM "Account"',
    'SELECT id_token FROM "Account"',
    'SELECT * FROM "Account"',
    'SELECT "sessionToken" FROM "Session"',
    'SELECT "sessionToken" FROM "AuthSession"',
    'SELECT token FROM "VerificationToken"',
    'SELECT a FROM "Account" a',
]


@pytest.mark.parametrize("query", SECRETS)
def test_readonly_cannot_read_secrets(world_db, snapshot, query):
    conn = world_db.connect("readonly")
    with raises_sqlstate("42501"):
        conn.execute(query)


# every function of the pack and a call of it (arguments are harmless)
API_CALLS = {
    "canonical_repo_url": "SELECT canonical_repo_url('https://github.com/a/b')",
    "lab_status_is_active": "SELECT lab_status_is_active('IN_PROGRESS')",
    "git_branch_name_valid": "SELECT git_branch_name_valid('main')",
    "lab_attempt_row_hash": "SELECT lab_attempt_row_hash(NULL::\"LabAttempt\")",
    "verify_lab_attempt_chain": "SELECT * FROM verify_lab_attempt_chain(NULL)",
    "list_unmapped_lab_sessions": "SELECT * FROM list_unmapped_lab_sessions()",
    "create_lab_session": ("SELECT create_lab_session(gen_random_uuid(), gen_random_uuid(), "
                           "'https://github.com/evil/x', 999999, 'evil-key')"),
    "resolve_lab_session": "SELECT resolve_lab_session(1001, 'https://github.com/dev1/lab-1')",
    "record_push": ("SELECT * FROM record_push('evil-1', 1001, 'https://github.com/dev1/lab-1',"
                    " 'refs/heads/main', repeat('e', 40), now(), '[]')"),
    "enqueue_verification_job": ('SELECT enqueue_verification_job((SELECT id FROM '
                                 '"LabAttempt" ORDER BY "createdAt" DESC LIMIT 1))'),
    "claim_verification_job": "SELECT * FROM claim_verification_job('evil', '1 hour')",
    "complete_verification_job": ("SELECT * FROM complete_verification_job("
                                  "gen_random_uuid(), 'evil', 'PASSED', 0, '{}')"),
    "requeue_expired_verification_jobs": "SELECT requeue_expired_verification_jobs()",
}
OWNER_ONLY_CALLS = {
    "forgea_archive_copy": "SELECT forgea_archive_copy('\"LabAttempt\"'::regclass, 'x')",
    "forgea_rollback_preserving": "SELECT forgea_rollback_preserving('a', 'b', 'c')",
    "forgea_archive_if_preserving": ("SELECT forgea_archive_if_preserving("
                                     "'\"LabAttempt\"'::regclass, 'x')"),
    "forgea_archive_pending": "SELECT forgea_archive_pending('LabAttempt', 'V0017')",
    "forgea_archive_put_back": ("SELECT forgea_archive_put_back('x', 'y', "
                                "'\"LabAttempt\"'::regclass, 'SELECT 1')"),
    "forgea_archive_restore": "SELECT forgea_archive_restore('\"LabAttempt\"'::regclass, 'x')",
    "forgea_archive_restore_columns": ("SELECT forgea_archive_restore_columns("
                                       "'\"LabAttempt\"'::regclass, 'a', 'b', ARRAY['c'])"),
    "forbid_ledger_mutation": "SELECT forbid_ledger_mutation()",
    "prevent_destructive_action": "SELECT prevent_destructive_action()",
    "prevent_auditlog_mutations": "SELECT prevent_auditlog_mutations()",
    "enforce_lab_session_status_transition": "SELECT enforce_lab_session_status_transition()",
    "guard_lab_session_identity": "SELECT guard_lab_session_identity()",
    "lab_session_version_default": "SELECT lab_session_version_default()",
    "lab_version_snapshot": "SELECT lab_version_snapshot()",
    "verification_attempt_insert_guard": "SELECT verification_attempt_insert_guard()",
    "verification_log_frozen": "SELECT verification_log_frozen()",
    "audit_log_webhook_guard": "SELECT audit_log_webhook_guard()",
    "verification_job_transition_guard": "SELECT verification_job_transition_guard()",
    "guard_github_repo_mapping": "SELECT guard_github_repo_mapping()",
    "sync_github_repo_mapping_active": "SELECT sync_github_repo_mapping_active()",
    "autobind_github_repo_mapping": "SELECT autobind_github_repo_mapping()",
    "lab_attempt_chain_hash": "SELECT lab_attempt_chain_hash()",
    "api_bad_input": "SELECT api_bad_input('a', 'b', 'c', 'd')",
    "lab_attempt_session_lock": "SELECT lab_attempt_session_lock(gen_random_uuid())",
    "lab_attempt_changed_files_valid": "SELECT lab_attempt_changed_files_valid('{}')",
    "backfill_github_repo_mapping": "CALL backfill_github_repo_mapping(1, 1)",
    "transition_api_caller": "SELECT transition_api_caller('x')",
}


def _forbidden_calls():
    for rk, group in ROLES.items():
        for fn, call in API_CALLS.items():
            if group not in EXPECTED_FUNCTION_EXECUTE.get(fn, ()):
                yield pytest.param(rk, call, id=f"{rk}-{fn}")
        for fn, call in OWNER_ONLY_CALLS.items():
            yield pytest.param(rk, call, id=f"{rk}-{fn}")


@pytest.mark.parametrize("role,call", list(_forbidden_calls()))
def test_forbidden_function_calls(world_db, snapshot, role, call):
    conn = world_db.connect(role)
    with raises_sqlstate("42501"):
        conn.execute(call)


def test_every_pack_function_is_covered(world_db):
    """A new function of the pack must be added to the attack lists above."""
    conn = world_db.connect("owner")
    names = {r[0] for r in conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public'")}
    missing = names - set(API_CALLS) - set(OWNER_ONLY_CALLS)
    assert not missing, f"functions not attacked yet: {sorted(missing)}"


def test_app_cannot_complete_a_job_it_sees(world_db, snapshot):
    """The app can read jobs; still it cannot complete one (42501), nor can a worker
    that does not hold the lease (FQ002)."""
    app = world_db.connect("app")
    app.execute("SELECT id FROM \"VerificationJob\" LIMIT 1").fetchone()
    with raises_sqlstate("42501"):
        app.execute("SELECT * FROM complete_verification_job((SELECT id FROM "
                    "\"VerificationJob\" LIMIT 1), 'w1', 'PASSED', 0, '{}')")


def test_app_cannot_forge_push_anchors(world_db, snapshot):
    """WEAKNESS (found by this suite): forgea_app may INSERT into "AuditLog", and
    verify_lab_attempt_chain() trusts every PUSH_RECORDED row whose actorId is
    'github-webhook' as a ledger anchor. The app (or anyone holding its
    credentials) can plant an anchor naming a row that never existed, or an
    existing row with another rowHash, and make the tamper evidence cry wolf
    ('missing' / 'edited') -- and harness verify fail -- for an intact ledger.
    Anchors must only come from record_push: the insert must be refused (42501)."""
    app = world_db.connect("app")
    s1 = world_db.world["s1"]
    with raises_sqlstate("42501"):
        app.execute(
            'INSERT INTO "AuditLog" (id, "userId", action, metadata, "actorId") '
            "VALUES (gen_random_uuid(), NULL, 'PUSH_RECORDED', jsonb_build_object("
            "'sessionId', %s::text, 'attempts', jsonb_build_array(jsonb_build_object("
            "'id', gen_random_uuid()::text, 'chainSeq', 99, 'rowHash', repeat('0', 64)))), "
            "'github-webhook')", (str(s1),))


def _queued_job_world(db):
    """seed_world plus one fresh QUEUED job of session 2."""
    from tests.builders import commit, push, seed_world
    from tests.builders import sha
    world = seed_world(db)
    push(db.connect("app"), [commit(sha(8801))], n=2, delivery="d-lease")
    return world


def test_another_worker_login_cannot_complete_a_job_by_reading_its_lease(db, hijack_role):
    """Any forgea_worker login can read "leaseOwner" (and the token's hash); a
    completion must present the run's lease token, which only the claim returned."""
    from tests.builders import claim
    from tests.attacks.conftest import WATCHED, connect_as
    from tests.helpers import digests
    _queued_job_world(db)
    victim = db.connect("worker")
    claimed = claim(victim, "honest-worker")
    job, token = claimed["id"], claimed["leaseToken"]
    thief = connect_as(db, hijack_role)
    owner, lease_hash = thief.execute(
        'SELECT "leaseOwner", "leaseTokenHash" FROM "VerificationJob" WHERE id = %s',
        (job,)).fetchone()
    assert owner == "honest-worker" and len(lease_hash) == 32
    before = digests(db.connect("owner"), WATCHED)
    for guess in (None, "00000000-0000-4000-8000-000000000000", str(job)):
        with raises_sqlstate("FQ002") as e:
            thief.execute("SELECT * FROM complete_verification_job(%s, %s, 'PASSED', 0, '{}', %s)",
                          (job, owner, guess))
        assert str(job) in str(e.value) and "run 1" in str(e.value)
    # the same login on another connection is another worker too
    with raises_sqlstate("FQ002"):
        db.connect("worker").execute(
            "SELECT * FROM complete_verification_job(%s, %s, 'PASSED', 0, '{}')", (job, owner))
    assert digests(db.connect("owner"), WATCHED) == before
    # the holder completes, with the token or on its own connection
    assert victim.execute("SELECT status::text FROM complete_verification_job("
                          "%s, 'honest-worker', 'FAILED', 1, '{}')", (job,)).fetchone() == (
        "FAILED",)
    assert token is not None


def test_a_spoofed_notification_is_only_a_hint(db):
    """Any role, even one with no grants, can NOTIFY verification_job_queued with
    any payload; PostgreSQL offers no way to restrict NOTIFY. A worker treats the
    notification as a hint to call claim_verification_job(), which hands out the
    oldest eligible job whatever the payload names; the payload's job cannot be
    completed either. Nothing changes."""
    import uuid

    from tests.builders import claim, commit, push, seed_world
    from tests.attacks.conftest import WATCHED
    from tests.builders import sha
    from tests.helpers import digests
    world = seed_world(db)
    push(db.connect("app"), [commit(sha(8601))], n=2, delivery="d-spoof")    # session 2: two QUEUED jobs
    owner = db.connect("owner")
    older, newer = [r[0] for r in owner.execute(
        'SELECT id FROM "VerificationJob" WHERE "sessionId" = %s AND status = \'QUEUED\' '
        'ORDER BY "createdAt", id', (world["s2"],))]
    passed = world["jobs"][0]
    listener = db.connect("worker")
    listener.execute("LISTEN verification_job_queued")
    payloads = [str(newer), str(passed), str(uuid.uuid4()), "not-a-uuid'; --", "x" * 7999]
    hostile = db.connect("hostile")
    for p in payloads:
        hostile.execute("SELECT pg_notify('verification_job_queued', %s)", (p,))
    got = [n.payload for n in listener.notifies(timeout=5, stop_after=len(payloads))]
    assert got == payloads          # the spoof arrives: the database cannot prevent it
    before = digests(owner, WATCHED)
    worker = db.connect("worker", autocommit=False)
    for _hint in got:               # a worker that acts on each hint...
        job = claim(worker, "hinted-worker")
        assert job["id"] == older      # ...gets what claim decides, never the payload's job
        worker.rollback()
    for target, code in ((newer, "FQ001"), (passed, "FQ001"), (uuid.uuid4(), "22023")):
        with raises_sqlstate(code):
            worker.execute("SELECT * FROM complete_verification_job(%s, 'hinted-worker', "
                           "'PASSED', 0, '{}')", (target,))
        worker.rollback()
    assert digests(owner, WATCHED) == before
