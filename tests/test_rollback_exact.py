"""Each rollback of the release chain (every file after the baseline) restores the
state before its file exactly: tables, columns, constraints, indexes, triggers and
their modes, function signatures, bodies byte for byte, configuration, and the
privileges on every table, column and function (which catalog.snapshot leaves
out)."""

from __future__ import annotations

from harness import apply as A
from harness import catalog, chain, chain_doc

FIRST = 2


def _grants(conn) -> dict:
    """Every ACL as a sorted list, a NULL one (the owner's default) written out as
    that default: a GRANT then REVOKE leaves the default explicit, and a REVOKE then
    GRANT may reorder the items; both grant the same."""
    rels = conn.execute("""
        SELECT c.relname, (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(
                   coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's'
                                                      ELSE 'r' END::"char", c.relowner))
               ) AS a)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
        ORDER BY 1""").fetchall()
    cols = conn.execute("""
        SELECT c.relname, a.attname, a.attacl::text FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND a.attacl IS NOT NULL ORDER BY 1, 2""").fetchall()
    funcs = conn.execute("""
        SELECT p.oid::regprocedure::text, (SELECT array_agg(a::text ORDER BY a::text)
                   FROM unnest(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) AS a),
               pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' ORDER BY 1""").fetchall()
    return {"relations": rels, "columns": cols, "functions": funcs}


def _state(conn, *, ignore_validation: bool = False) -> dict:
    snap = catalog.snapshot(conn)
    if ignore_validation:   # VALIDATE cannot be undone: compare the rules, not the flag
        for t in snap["tables"].values():
            for con in t["constraints"].values():
                con["definition"] = con["definition"].replace(" NOT VALID", "")
    return {"catalog": snap, "grants": _grants(conn)}


def test_each_rollback_of_the_release_chain_restores_the_previous_state(empty_db, sql_root):
    files = [f for f in chain.load_chain(sql_root) if f.version >= FIRST]
    assert files, "no migration after the baseline"
    before_first = [f for f in chain.load_chain(sql_root) if f.version < FIRST][-1]
    dsn = empty_db.dsn()
    A.apply(dsn, to=before_first.id, sql_root=sql_root)
    conn = empty_db.connect()
    for f in files:
        validate = f.id.endswith("_validate")    # VALIDATE-only files cannot be undone
        # backfills change rows, not the catalog (their rollback has nothing to undo)
        data_only = chain_doc.header_fields(f.sql)[1]["Rollback"].startswith("nothing to undo")
        before = _state(conn, ignore_validation=validate)
        A.apply(dsn, to=f.id, sql_root=sql_root)
        if not (validate or data_only):
            assert _state(conn) != before, f"{f.id} changed nothing"
        A.rollback(dsn, steps=1, sql_root=sql_root)
        after = _state(conn, ignore_validation=validate)
        assert catalog.diff(before["catalog"], after["catalog"], column_order=True) == [], f.id
        for k in before["grants"]:
            assert before["grants"][k] == after["grants"][k], (f.id, k)
        A.apply(dsn, to=f.id, sql_root=sql_root)
