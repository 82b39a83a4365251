"""Batched backfills report progress that the harness draws as a bar."""

import io

from harness.apply import apply, progress_bar
from tests.builders import ids


def test_progress_notice_is_drawn_as_a_bar():
    assert progress_bar("V0008 progress: 5000/20000 rows") == (
        "V0008 [########......................]  25.0% (5000/20000 rows)"
    )
    assert progress_bar("V0009 progress: 1000/4000 pages") == (
        "V0009 [########......................]  25.0% (1000/4000 pages)"
    )
    assert progress_bar("V0008 done: 3 sessions backfilled") is None


def test_backfill_of_existing_sessions_reports_progress_bars(baseline_db):
    conn = baseline_db.connect("owner")
    conn.execute(
        """INSERT INTO "User" (id, email) VALUES (%s, 'p@example.com')""", (ids.user(1),))
    conn.execute(
        """INSERT INTO "Lab" VALUES (%s, 't', 'e', 'RESOURCE_LEAK', 'u', 'v1', 'b', '{}')""",
        (ids.lab(1),))
    conn.execute(
        """INSERT INTO "LabSession" (id, "userId", "labId", "userForkUrl")
           SELECT gen_random_uuid(), %s, %s, 'https://github.com/u/r' || g
           FROM generate_series(1, 12000) AS g""",
        (ids.user(1), ids.lab(1)))
    conn.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS'""")
    err = io.StringIO()
    apply(baseline_db.dsn("owner"), err=err)
    lines = err.getvalue().splitlines()
    bars = [line for line in lines if line.startswith("V0008 [")]
    assert bars[-1].endswith("100.0% (12000/12000 rows)"), lines
    assert len(bars) == 3  # batches of 5000: 5000, 10000, 12000
    missing = conn.execute(
        """SELECT count(*) FROM "LabSession"
           WHERE "labVersionId" IS NULL OR "completedAt" IS DISTINCT FROM "lastActivityAt" """
    ).fetchone()[0]
    assert missing == 0
