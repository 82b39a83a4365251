"""sql/schema.sql is what the chain builds: generated, checked in, kept true."""

from __future__ import annotations

from harness import chain, schema_file


def test_schema_file_is_what_the_chain_builds(pg_cluster, owner_role, sql_root):
    """Change the chain, then run `harness schema`: this test names the first
    line that differs otherwise."""
    built = schema_file.generate(pg_cluster.dsn(), sql_root)
    kept = (sql_root / "schema.sql").read_text(encoding="utf-8")
    if built != kept:
        for n, (a, b) in enumerate(zip(built.splitlines(), kept.splitlines()), 1):
            assert a == b, f"sql/schema.sql line {n} differs from the chain: {b!r} != {a!r}"
    assert built == kept


def test_every_function_appears_once_with_the_file_of_its_current_version(sql_root):
    import re
    text = (sql_root / "schema.sql").read_text(encoding="utf-8")
    funcs, _ = schema_file.defining_files(chain.load_chain(sql_root))
    found = re.findall(r"^-- defined in (\S+)\nCREATE (?:FUNCTION|PROCEDURE) (\w+)\(",
                       text, re.M)
    names = [name for _, name in found]
    assert len(found) > 30 and len(names) == len(set(names))
    for relpath, name in found:
        assert funcs[name] == relpath, name
    # the lifecycle guard's current version is V0007's, not production's
    assert ("sql/triggers/V0007__lab_session_and_attempt_guards.sql",
            "enforce_lab_session_status_transition") in found
