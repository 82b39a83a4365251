"""harness lint: the tree passes; planted bad files fail with the rule named."""

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import chain, lint

REPO = Path(__file__).resolve().parent.parent
#: digests of lint inputs that passed: the suite runs once per PostgreSQL major,
#: the lint result does not depend on it
PASSED_DIR = REPO / ".harness" / "lint-passed"


def lint_inputs_digest() -> str:
    """sha256 over everything the lint result depends on: every SQL file it reads,
    its configuration, the lint and chain modules, the tools' versions."""
    h = hashlib.sha256()
    inputs = [*lint.sql_files(REPO), REPO / ".sqlfluff", REPO / "pyproject.toml",
              Path(lint.__file__), Path(chain.__file__)]
    for path in inputs:
        h.update(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path).encode())
        h.update(b"\0" + (path.read_bytes() if path.exists() else b"<missing>") + b"\0")
    for dist in ("sqlfluff", "squawk-cli", "sqlparse"):
        h.update(f"{dist}={importlib.metadata.version(dist)}\n".encode())
    h.update(sys.version.encode())
    return h.hexdigest()


@pytest.fixture
def small_tree(tmp_path):
    """Only the baseline and roles files: enough for the rules and the tools to run on
    (a planted file is judged on its own), fast."""
    for folder in ("migrations", "rollback"):
        (tmp_path / "sql" / folder).mkdir(parents=True)
        for f in (REPO / "sql" / folder).glob("V000[12]__*.sql"):
            shutil.copy(f, tmp_path / "sql" / folder / f.name)
    (tmp_path / "sql" / "triggers").mkdir()
    for name in (".sqlfluff", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def rules(findings):
    return {(Path(f.file).name, f.rule) for f in findings}


@pytest.mark.slow
def test_lint_passes_on_the_tree():
    """The whole tree, all tools. Once these exact inputs passed (an earlier suite
    of this checkout, e.g. on another major), that pass is reused: a changed file,
    setting or tool version changes the digest and lints again."""
    passed = PASSED_DIR / lint_inputs_digest()
    if passed.exists():
        return
    findings = lint.run_lint(REPO)
    assert findings == [], "\n".join(map(str, findings))
    PASSED_DIR.mkdir(parents=True, exist_ok=True)
    passed.touch()


def test_every_squawk_exclusion_has_a_reason():
    for pattern, rule, reason in lint.SQUAWK_EXCLUSIONS:
        assert pattern.startswith("sql/") and rule and len(reason) > 20


def test_pack_rules_catch_a_planted_bad_file(small_tree):
    tree = small_tree
    bad = tree / "sql" / "migrations" / "V9990__bad.sql"
    bad.write_text(
        "CREATE FUNCTION leak() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;\n"
        "BEGIN;\nCOMMIT;\n")
    (tree / "sql" / "rollback" / "V9991__orphan.sql").write_text("-- orphan\nSELECT 1;\n")
    found = rules(lint.run_lint(tree, tools=False))
    assert ("V9990__bad.sql", "chain-missing-rollback") in found
    assert ("V9991__orphan.sql", "chain-orphan-rollback") in found
    assert ("V9990__bad.sql", "header-comment") in found
    assert ("V9990__bad.sql", "definer-search-path") in found
    assert ("V9990__bad.sql", "function-execute-public") in found
    assert ("V9990__bad.sql", "transaction-control") in found


def test_revoke_or_public_function_directive_satisfies_the_execute_rule(small_tree):
    tree = small_tree
    (tree / "sql" / "migrations" / "V9990__ok.sql").write_text(
        "-- V9990__ok: fine\n-- harness: public-function ping used by health checks of every role\n"
        "-- What: x\n-- Why: x\n-- Transaction: yes.\n-- Locks: none.\n-- Pre-conditions: none.\n"
        "-- Rollback: x\n"
        "CREATE FUNCTION ping() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "CREATE FUNCTION priv() RETURNS int LANGUAGE sql SECURITY DEFINER\n"
        "SET search_path = pg_catalog, public AS $$ SELECT 1 $$;\n"
        "REVOKE ALL ON FUNCTION priv() FROM PUBLIC;\n")
    (tree / "sql" / "rollback" / "V9990__ok.sql").write_text(
        "-- undo\n-- What: drops both. Locks: none.\nDROP FUNCTION priv();\nDROP FUNCTION ping();\n")
    found = [f for f in lint.run_lint(tree, tools=False) if "V9990" in f.file]
    assert found == [], "\n".join(map(str, found))


@pytest.mark.slow
def test_cli_lint_fails_naming_the_squawk_rule_on_an_unsafe_file(small_tree):
    tree = small_tree
    (tree / "sql" / "migrations" / "V9990__unsafe.sql").write_text(
        "-- adds an index the blocking way\n"
        'CREATE INDEX "Lab_title_idx" ON "Lab" ("title");\n')
    (tree / "sql" / "rollback" / "V9990__unsafe.sql").write_text(
        '-- undo\nDROP INDEX "Lab_title_idx";\n')
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "lint"], cwd=tree,
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sql/migrations/V9990__unsafe.sql:2: squawk:require-concurrent-index-creation" \
        in proc.stdout, proc.stdout
