"""The pre-flight: every data pre-condition of every pending file, read-only, before
anything commits; and the FAILED one-way door, said before the window.

Production is what the upstream Prisma migrations build (``upstream_db``), or
that production adopted with the roles applied (``baseline_db``), where
forgea_readonly has its grants. Each pre-condition is planted on a real server
and both its query (sql/preflight/) and the file's own in-file check (FM001) must
catch it; apply, apply --dry-run and plan must refuse (exit 3) before anything
commits; rollback across the file that adds FAILED must refuse, naming the
FAILED sessions and the lowest version it can still reach.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness import apply as A
from harness import catalog
from harness import preflight as PF
from harness.chain import load_chain, scan
from harness.errors import PreflightFailed
from harness.runner import split_statements
from tests.builders import add_lab, add_user, create_session
from tests.chain_ids import CHAIN
from tests.helpers import raises_sqlstate, tree_without_preconditions
from tests.prodlike import seed_production_like, snapshot_rows

REPO = Path(__file__).resolve().parent.parent


def harness(*args, sql_root=None, timeout=300):
    env = dict(os.environ)
    if sql_root:
        env["HARNESS_SQL_ROOT"] = str(sql_root)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def chain_file(sql_root, concern: str):
    return next(f for f in load_chain(sql_root) if f.id == CHAIN[concern])


def file_before(sql_root, concern: str) -> str:
    files = load_chain(sql_root)
    i = [f.id for f in files].index(CHAIN[concern])
    return files[i - 1].id


def in_file_check_refuses(conn, sql_root, concern: str, containing: str = "") -> str:
    """Run the file's own pre-flight DO block (the FM001 check; the first one
    whose text holds ``containing`` when the file has several) and return its
    error text: it must refuse."""
    f = chain_file(sql_root, concern)
    stmts = split_statements(f.sql)
    checks = [i for i, s in enumerate(stmts) if "'FM001'" in s and containing in s]
    assert checks, f"{f.id} has no in-file FM001 check"
    helpers = [s for s in stmts[:checks[0]]      # the functions the check calls
               if re.match(r"(\s*--[^\n]*\n)*\s*CREATE FUNCTION", s)]
    with conn.transaction(force_rollback=True):
        for h in helpers:
            conn.execute(h)
        with raises_sqlstate("FM001") as e:
            conn.execute(stmts[checks[0]])
    d = e.value.diag
    return f"{d.message_primary} {d.message_detail}"


def grant_bookkeeping_to_readonly(db):
    su = db.connect("superuser")
    su.execute("GRANT USAGE ON SCHEMA harness TO readonly_login")
    su.execute('GRANT SELECT ON ALL TABLES IN SCHEMA harness TO readonly_login')


def active_duplicates(owner) -> list[uuid.UUID]:
    """Two active sessions of one user and lab (one IN_PROGRESS, one STUCK)."""
    user, lab = add_user(owner), add_lab(owner)
    dups = [uuid.uuid4(), uuid.uuid4()]
    for n, sid in enumerate(dups):
        owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl", '
                      '"startedAt") VALUES (%s, %s, %s, %s, %s)',
                      (sid, user, lab, f"https://github.com/dup{n}/fork", f"2026-01-2{n + 1}"))
    owner.execute("UPDATE \"LabSession\" SET \"status\" = 'STUCK' WHERE \"id\" = %s", (dups[1],))
    return dups


# ------------------------------------------------------------------ the files as data


def test_every_named_precondition_exists_and_every_precondition_file_is_needed(
        sql_root, scratch_dir):
    files, _ = scan(sql_root)
    assert PF.lint_problems(sql_root, files) == []
    assert {n for f in files for n in f.preconditions} == set(PF.load(sql_root))

    root = scratch_dir / "sql"
    shutil.copytree(sql_root, root)
    one_active = root / "migrations" / (CHAIN["one_active"] + ".sql")
    one_active.write_text(one_active.read_text().replace(
        "-- harness: precondition one_active_session",
        "-- harness: precondition one_active_session no_such_check"))
    (root / "preflight" / "orphan_check.sql").write_text(
        "-- orphan_check: nobody needs it\n-- Remedy: none.\nSELECT 1 AS x ORDER BY 1;\n")
    files, _ = scan(root)
    rules = sorted((p.rule, p.message.split()[0]) for p in PF.lint_problems(root, files))
    assert rules == [("precondition-missing", "no"), ("precondition-unused", "no")]


def test_the_file_that_adds_failed_is_found_by_its_add_value(sql_root):
    assert PF.failed_door(load_chain(sql_root)).id == CHAIN["lab_status_failed"]


# ------------------------------------------------------------------ each pre-condition


def test_one_active_session_is_found_by_the_precondition_and_by_the_in_file_check(
        baseline_db, sql_root):
    """As readonly_login (forgea_readonly) on adopted production: exit 3, both
    sessions, the listing SQL and the remedy; VerificationToken is said to be
    unchecked, the pre-conditions on objects not created yet are deferred. The
    file's own check refuses the same sessions."""
    owner = baseline_db.connect("owner")
    seed_production_like(owner)
    dups = active_duplicates(owner)
    grant_bookkeeping_to_readonly(baseline_db)

    r = harness("preflight", "--target", baseline_db.dsn("readonly"), sql_root=sql_root)
    assert r.returncode == 3, r.stdout + r.stderr
    out = r.stdout
    assert all(str(s) in out for s in dups)
    assert "FAILED one_active_session (sql/preflight/one_active_session.sql)" in out
    assert f"needed by {CHAIN['one_active']}" in out
    assert "to list them all (psql -f sql/preflight/one_active_session.sql)" in out
    assert 'FROM public."LabSession" AS s' in out and "remedy:" in out
    assert "UNCHECKED restorable_timestamps_verification_token" in out
    assert "DEFERRED session_lifecycle_columns" in out
    assert "DEFERRED shared_active_fork_url" not in out     # it runs before the chain
    assert "shared_active_fork_url" not in [o.name for o in A.preflight(
        baseline_db.dsn("readonly"), sql_root=sql_root).failures]
    assert f"one-way door: {CHAIN['lab_status_failed']} adds FAILED" in out

    rep = A.preflight(baseline_db.dsn("readonly"), sql_root=sql_root)
    listed = rep.by_name("one_active_session")
    assert listed.total == 2 and {r[2] for r in listed.rows} == set(dups)
    text = in_file_check_refuses(owner, sql_root, "one_active")
    assert all(str(s) in text for s in dups)


def test_preflight_lists_the_first_n_and_the_total(baseline_db, sql_root):
    owner = baseline_db.connect("owner")
    for _ in range(3):
        active_duplicates(owner)
    rep = A.preflight(baseline_db.dsn(), sql_root=sql_root, limit=4)
    o = rep.by_name("one_active_session")
    assert (o.total, len(o.rows)) == (6, 4)
    assert "  ... 2 more (--limit N shows more)" in PF.render_outcome(o, 4)
    doc = {d["name"]: d for d in rep.as_dict()["preconditions"]}
    assert doc["one_active_session"]["total"] == 6 and len(doc["one_active_session"]["rows"]) == 4


def test_restorable_timestamps_are_found_by_the_precondition_and_by_the_in_file_check(
        upstream_db, sql_root):
    owner = upstream_db.connect("owner")
    user, lab = add_user(owner), add_lab(owner)
    sid = uuid.uuid4()
    owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl", '
                  '"startedAt") VALUES (%s, %s, %s, %s, %s)',
                  (sid, user, lab, "https://github.com/t/fork", "1969-07-20 20:17:40"))
    owner.execute('INSERT INTO "VerificationToken" ("identifier", "token", "expires") '
                  "VALUES ('late@example.test', 'tok', '294276-12-31 23:59:59.999')")

    rep = A.preflight(upstream_db.dsn(), sql_root=sql_root)
    assert not rep.ok
    ts = rep.by_name("restorable_timestamps")
    assert ts.state == "failed" and ts.rows == [
        ("LabSession", str(sid), "startedAt", "1969-07-20 20:17:40")]
    vt = rep.by_name("restorable_timestamps_verification_token")
    assert vt.state == "failed" and vt.rows[0][0] == "late@example.test"
    text = in_file_check_refuses(owner, sql_root, "restorable_timestamps", "timestamps outside 1970")
    assert str(sid) in text and "late@example.test" in text


def test_session_lifecycle_columns_are_checked_when_their_file_is_next(baseline_db, sql_root):
    """Deferred while the backfill that fills the columns is pending; once the file
    that adds the constraints is next, a terminal-less completedAt is listed, and
    the file's own check refuses it."""
    owner = baseline_db.connect("owner")
    A.apply(baseline_db.dsn(), to=file_before(sql_root, "session_constraints"),
            sql_root=sql_root)
    user, lab = add_user(owner), add_lab(owner)
    sid = uuid.uuid4()
    owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                  "VALUES (%s, %s, %s, 'https://github.com/c/fork')", (sid, user, lab))
    owner.execute('ALTER TABLE "LabSession" DISABLE TRIGGER USER')
    owner.execute('UPDATE "LabSession" SET "completedAt" = now() WHERE "id" = %s', (sid,))
    owner.execute('ALTER TABLE "LabSession" ENABLE TRIGGER USER')

    rep = A.preflight(baseline_db.dsn(), sql_root=sql_root)
    o = rep.by_name("session_lifecycle_columns")
    assert o.state == "failed" and [r[0] for r in o.rows] == [sid]
    assert str(sid) in in_file_check_refuses(owner, sql_root, "session_constraints")


def test_shared_fork_url_is_found_on_production_before_anything_commits(
        upstream_db, sql_root, scratch_dir):
    """The shared-URL pre-condition computes the canonical form itself, so it runs on
    production, where canonical_repo_url() does not exist yet: preflight exits 3
    naming both sessions, apply exits 3 with nothing committed, and the file's own
    check refuses the same. A fork URL that does not parse is a warning, never a
    refusal."""
    owner = upstream_db.connect("owner")
    lab = add_lab(owner)
    shared = [uuid.uuid4(), uuid.uuid4()]
    for sid, url in zip(shared, ("https://github.com/Acme/Fork", "git@github.com:acme/fork.git")):
        owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                      "VALUES (%s, %s, %s, %s)", (sid, add_user(owner), lab, url))
    odd = uuid.uuid4()
    owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                  "VALUES (%s, %s, %s, 'not a url')", (odd, add_user(owner), lab))
    cat, rows = catalog.snapshot(owner), snapshot_rows(owner)

    rep = A.preflight(upstream_db.dsn(), sql_root=sql_root)
    assert not rep.ok and [o.name for o in rep.failures] == ["shared_active_fork_url"]
    assert {r[1] for r in rep.by_name("shared_active_fork_url").rows} == set(shared)
    warn = rep.by_name("unparseable_fork_url")
    assert warn.state == "warning" and [r[0] for r in warn.rows] == [odd]

    r = harness("apply", "--target", upstream_db.dsn(), sql_root=sql_root)
    assert r.returncode == 3, r.stderr
    assert all(str(s) in r.stderr for s in shared)
    assert catalog.diff(cat, catalog.snapshot(owner)) == [] and snapshot_rows(owner) == rows
    assert owner.execute("SELECT to_regnamespace('harness')").fetchone()[0] is None

    A.apply(upstream_db.dsn(), to=file_before(sql_root, "repo_mapping"),
            sql_root=tree_without_preconditions(sql_root, scratch_dir))
    text = in_file_check_refuses(owner, sql_root, "repo_mapping")
    assert all(str(s) in text for s in shared)


def test_the_preconditions_canonical_url_is_canonical_repo_url(upstream_db, sql_root):
    """The canonical form the two fork-URL pre-conditions compute inline (they run
    before the chain exists) agrees with canonical_repo_url() of the chain on a
    corpus of hostile URLs: every Unicode category, case and locale traps,
    every accepted prefix, lengths at the limits. Production gets the function
    in a scratch schema; each URL is a session of its own."""
    from tests.attacks.test_hostile_input import LOCALE_URLS
    owner = upstream_db.connect("owner")
    f = chain_file(sql_root, "canonical_url")
    body = re.search(r"^CREATE FUNCTION canonical_repo_url\(.*?^\$\$;$", f.sql,
                     re.M | re.S).group(0)
    owner.execute("CREATE SCHEMA ref")
    owner.execute(body.replace("CREATE FUNCTION canonical_repo_url",
                               "CREATE FUNCTION ref.canonical_repo_url", 1))
    owners = ["a", "A-b", "-a", "a-", "a" * 39, "a" * 40, "0", "x.y", "x_y"]
    names = ["r", "R.git", "r.git.git", ".git", "..", ".", "a" * 100, "a" * 101, "r_x-y.z"]
    prefixes = ["https://github.com/", "http://github.com/", "https://www.github.com/",
                "http://www.github.com/", "ssh://git@github.com/", "git@github.com:",
                "HTTPS://WWW.GITHUB.COM/", "https://gitlab.com/", "github.com/",
                "https://github.com.evil.com/", "ftp://github.com/"]
    corpus = list(LOCALE_URLS) + [
        p + o + "/" + n + tail for p in prefixes for o in owners for n in names
        for tail in ("", "/", "//", ".git/")] + [
        "", " ", "https://github.com/o", "https://github.com/o/r/x",
        "https://user:pw@github.com/o/r", "https://github.com/o/r?x=1",
        "https://github.com/o/r#x", "https://github.com:443/o/r",
        "https://github.com/" + "o/" + "r" * 480, "https://github.com/o%2Fr/x"]
    user, lab = add_user(owner), add_lab(owner)
    with owner.cursor() as cur:
        cur.executemany('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                        "VALUES (gen_random_uuid(), %s, %s, %s)",
                        [(user, lab, u) for u in corpus])
    listed = {r[0] for r in owner.execute(
        (REPO / "sql" / "preflight" / "unparseable_fork_url.sql").read_text())}
    expected = {r[0] for r in owner.execute(
        'SELECT "id" FROM "LabSession" WHERE ref.canonical_repo_url("userForkUrl") IS NULL')}
    assert listed == expected
    shared = {(r[0], r[1]) for r in owner.execute(
        (REPO / "sql" / "preflight" / "shared_active_fork_url.sql").read_text())}
    expected_shared = {(r[0], r[1]) for r in owner.execute("""
        SELECT c.url, c.id FROM (
            SELECT "id" AS id, ref.canonical_repo_url("userForkUrl") AS url,
                   count(*) OVER (PARTITION BY ref.canonical_repo_url("userForkUrl")) AS n
            FROM "LabSession") AS c
        WHERE c.url IS NOT NULL AND c.n > 1""")}
    assert shared == expected_shared
    parsed = owner.execute('SELECT count(*) FROM "LabSession" WHERE '
                           'ref.canonical_repo_url("userForkUrl") IS NOT NULL').fetchone()[0]
    assert 100 < parsed < len(corpus) - 100, parsed    # the corpus reaches both answers
    assert len(expected_shared) > 10


# ------------------------------------------------------------------ apply, dry run, plan


def test_clean_production_passes_the_preflight_as_readonly(baseline_db, sql_root):
    seed_production_like(baseline_db.connect("owner"))
    grant_bookkeeping_to_readonly(baseline_db)
    r = harness("preflight", "--target", baseline_db.dsn("readonly"), sql_root=sql_root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pre-flight: ok" in r.stdout
    r = harness("preflight", "--json", "--target", baseline_db.dsn("readonly"),
                sql_root=sql_root)
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["failed_door"] == CHAIN["lab_status_failed"]


def test_apply_on_production_that_misses_a_precondition_exits_3_and_commits_nothing(
        upstream_db, sql_root):
    owner = upstream_db.connect("owner")
    dups = active_duplicates(owner)
    cat, rows = catalog.snapshot(owner), snapshot_rows(owner)

    for args in (("plan",), ("apply", "--dry-run"), ("apply",)):
        r = harness(*args, "--target", upstream_db.dsn(), sql_root=sql_root)
        assert r.returncode == 3, (args, r.stdout, r.stderr)
        assert "pre-flight failed" in r.stderr and "one_active_session" in r.stderr
        assert all(str(s) in r.stderr for s in dups), args
        assert "psql -f sql/preflight/one_active_session.sql" in r.stderr
        assert "Traceback" not in r.stderr
    assert catalog.snapshot(owner) == cat
    assert snapshot_rows(owner) == rows
    assert owner.execute("SELECT to_regnamespace('harness')").fetchone()[0] is None
    assert A.status(upstream_db.dsn(), sql_root)["applied"] == []


def test_plan_says_the_failed_door_before_the_window_and_not_after(upstream_db, db, sql_root):
    door = CHAIN["lab_status_failed"]
    r = harness("plan", "--target", upstream_db.dsn(), sql_root=sql_root)
    assert r.returncode == 0, r.stderr
    assert f"one-way door: {door} adds FAILED to LabStatus" in r.stdout
    assert f"no rollback can go below {door}" in r.stdout
    r = harness("plan", "--target", db.dsn(), sql_root=sql_root)
    assert r.returncode == 0 and "one-way door" not in r.stdout


# ------------------------------------------------------------------ the FAILED one-way door


def test_rollback_across_the_failed_door_refuses_naming_the_sessions_and_the_version(
        db, sql_root):
    owner, app = db.connect("owner"), db.connect("app")
    user, lab = add_user(owner), add_lab(owner)
    sid = create_session(app, user, lab)
    app.execute("UPDATE \"LabSession\" SET \"status\" = 'FAILED' WHERE \"id\" = %s", (sid,))
    door = CHAIN["lab_status_failed"]
    below = file_before(sql_root, "lab_status_failed")
    applied = [a["id"] for a in A.status(db.dsn(), sql_root)["applied"]]
    cat = catalog.snapshot(owner)

    for extra in (("--dry-run",), (), ("--preserve",)):
        r = harness("rollback", "--to", below, *extra, "--target", db.dsn(), sql_root=sql_root)
        assert r.returncode == 3, (extra, r.stderr)
        assert f"refusing to roll back below {door}: 1 session(s) are FAILED" in r.stderr
        assert f"session {sid} (user {user}, lab {lab}) is FAILED" in r.stderr
        assert f"the lowest version this database can be rolled back to is {door}" in r.stderr
    assert [a["id"] for a in A.status(db.dsn(), sql_root)["applied"]] == applied
    assert catalog.snapshot(owner) == cat
    # down to the door itself is still possible
    r = harness("rollback", "--to", door, "--dry-run", "--target", db.dsn(), sql_root=sql_root)
    assert r.returncode == 0, r.stderr


def test_dry_run_apply_raises_preflight_failed_through_the_api(upstream_db, sql_root):
    active_duplicates(upstream_db.connect("owner"))
    with pytest.raises(PreflightFailed) as e:
        A.apply(upstream_db.dsn(), dry_run=True, sql_root=sql_root)
    assert e.value.exit_code == 3


def test_preflight_runs_read_only_even_when_a_precondition_tries_to_write(
        upstream_db, sql_root, scratch_dir):
    root = scratch_dir / "sql"
    shutil.copytree(sql_root, root)
    one_active = root / "migrations" / (CHAIN["one_active"] + ".sql")
    one_active.write_text(one_active.read_text().replace(
        "-- harness: precondition one_active_session",
        "-- harness: precondition one_active_session sneaky"))
    (root / "preflight" / "sneaky.sql").write_text(
        '-- sneaky: locks rows\n-- Remedy: none.\n'
        'SELECT "id" FROM public."User" ORDER BY "id" FOR UPDATE;\n')
    owner = upstream_db.connect("owner")
    add_user(owner)
    with raises_sqlstate("25006"):
        A.preflight(upstream_db.dsn(), sql_root=root)
    r = harness("preflight", "--target", upstream_db.dsn(), sql_root=root)
    assert r.returncode == 1 and "ERROR 25006" in r.stderr, r.stderr
