"""search_path hijack: an insider (member of forgea_app and forgea_worker) who may
create a schema plants same-named functions and operators, puts the schema
BEFORE pg_catalog and calls every SECURITY DEFINER function and fires every
trigger. The planted objects must never run (they raise HJ001) and the results
must be those of a clean call."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.builders import NOW, add_lab, add_user, commit, ids, sha
from tests.attacks.conftest import connect_as

PLANT = r"""
CREATE SCHEMA evil;
CREATE TABLE evil.canary (what text);
CREATE FUNCTION evil.boom(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.canary VALUES (what);
    RAISE EXCEPTION 'hijacked: %', what USING ERRCODE = 'HJ001';
END $$;
CREATE FUNCTION evil.sha256(bytea) RETURNS bytea LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('sha256'); RETURN '\x00'; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('now'); RETURN NULL; END $$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('clock_timestamp'); RETURN NULL; END $$;
CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('gen_random_uuid'); RETURN NULL; END $$;
CREATE FUNCTION evil.canonical_repo_url(text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('canonical_repo_url'); RETURN NULL; END $$;
CREATE FUNCTION evil.lab_status_is_active(text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('lab_status_is_active'); RETURN true; END $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('jsonb_typeof'); RETURN 'object'; END $$;
CREATE FUNCTION evil.timezone(text, timestamptz) RETURNS timestamp LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('timezone'); RETURN NULL; END $$;
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('lower'); RETURN $1; END $$;
CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('length'); RETURN 1; END $$;
CREATE FUNCTION evil.encode(bytea, text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('encode'); RETURN ''; END $$;
CREATE FUNCTION evil.convert_to(text, name) RETURNS bytea LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('convert_to'); RETURN ''; END $$;
CREATE FUNCTION evil.pg_advisory_xact_lock(integer, integer) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('pg_advisory_xact_lock'); END $$;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('pg_notify'); END $$;
CREATE FUNCTION evil.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('=(text,text)'); RETURN true; END $$;
CREATE FUNCTION evil.eq_uuid(uuid, uuid) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('=(uuid,uuid)'); RETURN true; END $$;
CREATE FUNCTION evil.match_text(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('~(text,text)'); RETURN true; END $$;
CREATE FUNCTION evil.concat_text(text, text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom('||(text,text)'); RETURN ''; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq_text);
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.eq_uuid);
CREATE OPERATOR evil.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.match_text);
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.concat_text);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT SELECT, INSERT ON evil.canary TO PUBLIC;
"""

TEMP_SHADOWS = ("LabSession", "GitHubRepoMapping", "LabAttempt", "VerificationJob",
                "AuditLog", "LabVersion", "VerificationAttempt", "GitHubPushDelivery")


@pytest.fixture
def hijacker(world_db, hijack_role):
    su = world_db.connect("superuser")
    su.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(world_db.name), sql.Identifier(hijack_role)))
    conn = connect_as(world_db, hijack_role)
    conn.execute(PLANT)
    for t in TEMP_SHADOWS:   # pg_temp shadows too (searched first unless listed last)
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE public.{})").format(
            sql.Identifier(t), sql.Identifier(t)))
    conn.execute("SET search_path = evil, pg_catalog, public")
    # sanity: the plant works for an unqualified call of the hijacker's own
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT now()")
    assert e.value.sqlstate == "HJ001"
    yield conn
    conn.close()
    owner = world_db.connect("superuser")
    owner.execute("DROP SCHEMA evil CASCADE")
    su.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
        sql.Identifier(world_db.name), sql.Identifier(hijack_role)))


def _canary_empty(conn):
    assert conn.execute("SELECT count(*) FROM evil.canary").fetchone()[0] == 0
    for t in TEMP_SHADOWS:
        assert conn.execute(sql.SQL("SELECT count(*) FROM pg_temp.{}").format(
            sql.Identifier(t))).fetchone()[0] == 0, f"temp shadow {t} was written"


def test_definer_functions_and_triggers_ignore_planted_objects(world_db, hijacker):
    h = hijacker
    owner = world_db.connect("owner")
    add_user(owner, 40)
    add_user(owner, 41)
    lab = add_lab(owner, 40)
    url = "https://github.com/Hijack/Lab-40.git"
    # create_lab_session (definer) -> LabSession triggers + mapping guard (definer)
    s = h.execute("SELECT public.create_lab_session(%s, %s, %s, %s, %s)",
                  (ids.user(40), lab, url, 4040, "hijack-key")).fetchone()[0]
    m = owner.execute('SELECT "repoUrl", "repoFullName", "sessionActive", "providerRepoId" '
                      'FROM "GitHubRepoMapping" WHERE "sessionId" = %s', (s,)).fetchone()
    assert m == ("https://github.com/hijack/lab-40", "hijack/lab-40", True, 4040)
    # idempotent replay under the hijacked path
    assert h.execute("SELECT public.create_lab_session(%s, %s, %s, %s, %s)",
                     (ids.user(40), lab, url, 4040, "hijack-key")).fetchone()[0] == s
    assert h.execute("SELECT public.resolve_lab_session(4040, NULL)").fetchone()[0] == s
    assert h.execute("SELECT public.canonical_repo_url(%s)", (url,)).fetchone()[0] == \
        "https://github.com/hijack/lab-40"
    # record_push (definer) -> chain trigger, enqueue (definer), NOTIFY, AuditLog
    rows = h.execute("SELECT * FROM public.record_push(%s, %s, %s, %s, %s, %s, %s)",
                     ("hj-1", 4040, url, "refs/heads/main", sha(4001), NOW,
                      Jsonb([commit(sha(4000)), commit(sha(4001))]))).fetchall()
    assert [r[4] for r in rows] == ["recorded", "recorded"] and rows[1][3] is not None
    dup = h.execute("SELECT * FROM public.record_push(%s, %s, %s, %s, %s, %s, %s)",
                    ("hj-1", 4040, url, "refs/heads/main", sha(4001), NOW,
                     Jsonb([commit(sha(4000)), commit(sha(4001))]))).fetchall()
    assert [r[4] for r in dup] == ["duplicate", "duplicate"]
    rej = h.execute("SELECT * FROM public.record_push(%s, %s, %s, %s, %s, %s, %s)",
                    ("hj-2", 4999, "https://github.com/nobody/none", "refs/heads/main",
                     sha(4002), NOW, Jsonb([commit(sha(4002))]))).fetchall()
    assert rej[0][4] == "rejected"
    assert h.execute("SELECT public.enqueue_verification_job(%s)",
                     (rows[0][1],)).fetchone()[0] is not None
    # worker side: claim / complete / requeue (definer)
    job = None
    for _ in range(10):
        r = h.execute('SELECT id, "sessionId" FROM public.claim_verification_job(%s, %s)',
                      ("hj-worker", "5 minutes")).fetchone()
        if r is None:
            break
        st = "PASSED" if r[1] == s else "FAILED"
        out = h.execute("SELECT status::text FROM public.complete_verification_job("
                        "%s, %s, %s, 0, %s)", (r[0], "hj-worker", st, Jsonb({"x": 1}))
                        ).fetchone()
        assert out[0] == st
        if r[1] == s:
            job = r[0]
    assert job is not None
    assert h.execute("SELECT public.requeue_expired_verification_jobs()").fetchone()[0] == 0
    assert owner.execute('SELECT status::text, "completedAt" IS NOT NULL FROM "LabSession" '
                         "WHERE id = %s", (s,)).fetchone() == ("VERIFIED_PASS", True)
    # DML by the app role that fires every remaining trigger
    # (the hijacker's own statements qualify their operators: only the pack is on trial)
    h.execute('UPDATE public."Lab" SET "repoVersion" = %s WHERE id OPERATOR(pg_catalog.=) %s',
              ("hj-v2", lab))
    assert owner.execute('SELECT max("versionNumber") FROM "LabVersion" WHERE "labId" = %s',
                         (lab,)).fetchone()[0] == 2
    s2 = ids.session(4041)
    h.execute('INSERT INTO public."LabSession" (id, "userId", "labId", "userForkUrl") '
              "VALUES (%s, %s, %s, %s)", (s2, ids.user(41), lab,
                                          "git@github.com:hijack/second.git"))
    h.execute("""UPDATE public."LabSession" SET status = 'FAILED'
                 WHERE id OPERATOR(pg_catalog.=) %s""", (s2,))
    assert owner.execute('SELECT "repoUrl", "sessionActive" FROM "GitHubRepoMapping" '
                         'WHERE "sessionId" = %s', (s2,)).fetchone() == \
        ("https://github.com/hijack/second", False)
    _canary_empty(h)
    # the ledger written under the hijacked path verifies with a clean path
    assert owner.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)").fetchone()[0] == 0
    from harness import verify as V
    rep = V.verify(world_db.dsn("owner"))
    assert rep.ok, V.render_table(rep)


def test_hijacked_results_equal_clean_results(world_db, hijacker):
    """Same calls through a clean and a hijacked path give the same answers."""
    owner = world_db.connect("owner")
    app = world_db.connect("app")
    calls = [("SELECT public.canonical_repo_url(%s)", ("ssh://git@github.com/A/B.git/",)),
             ("SELECT public.canonical_repo_url(%s)", ("https://github.com.evil.com/a/b",)),
             ("SELECT public.git_branch_name_valid(%s)", ("feature/x..y",)),
             ("SELECT public.lab_status_is_active(%s)", ("STUCK",)),
             ("SELECT public.resolve_lab_session(%s, %s)", (1001, None)),
             ("SELECT public.resolve_lab_session(%s, %s)", (None, "https://github.com/DEV2/lab-2")),
             ("SELECT count(*) FROM public.list_unmapped_lab_sessions()", ())]
    for q, p in calls:
        assert hijacker.execute(q, p).fetchone() == app.execute(q, p).fetchone(), q
    _canary_empty(hijacker)
    del owner
