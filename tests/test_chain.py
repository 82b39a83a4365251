"""The chain reader: one version sequence over two folders, paired rollbacks."""

import hashlib
import shutil

import pytest

from harness import chain
from harness.errors import ChainError


def _copy(sql_root, tmp_path):
    dst = tmp_path / "sql"
    shutil.copytree(sql_root, dst)
    return dst


def test_repo_chain_is_one_ordered_sequence_with_rollbacks(sql_root):
    files = chain.load_chain(sql_root)
    versions = [f.version for f in files]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert {f.folder for f in files} <= {"migrations", "triggers"}
    assert files[0].id == "V0001__baseline" and files[0].baseline
    assert not any(f.baseline for f in files[1:])
    for f in files:
        assert f.rollback_path is not None and f.rollback_path.name == f.path.name
        assert f.checksum == hashlib.sha256(f.path.read_bytes()).hexdigest()


def test_duplicate_version_across_folders_is_an_error(sql_root, tmp_path):
    root = _copy(sql_root, tmp_path)
    (root / "triggers" / "V0001__other.sql").write_text("-- dup\nSELECT 1;\n")
    (root / "rollback" / "V0001__other.sql").write_text("-- dup\nSELECT 1;\n")
    with pytest.raises(ChainError) as e:
        chain.load_chain(root)
    assert "chain-duplicate-version" in e.value.render()


def test_missing_and_orphan_rollbacks_are_errors(sql_root, tmp_path):
    root = _copy(sql_root, tmp_path)
    (root / "migrations" / "V9990__no_rollback.sql").write_text("-- x\nSELECT 1;\n")
    (root / "rollback" / "V9991__orphan.sql").write_text("-- x\nSELECT 1;\n")
    files, problems = chain.scan(root)
    rules = {(p.rule, p.file.split("/")[-1]) for p in problems}
    assert ("chain-missing-rollback", "V9990__no_rollback.sql") in rules
    assert ("chain-orphan-rollback", "V9991__orphan.sql") in rules
    with pytest.raises(ChainError):
        chain.load_chain(root)


def test_header_directives_are_parsed_only_from_the_header(tmp_path):
    text = ("-- what\n-- harness: no-transaction\n--\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS x ON t (a);\n"
            "-- harness: baseline\n")
    names = [d.name for d in chain.parse_directives(text)]
    assert names == ["no-transaction"]
    assert chain.has_header_comment(text)
    assert not chain.has_header_comment("SELECT 1;\n")


def test_find_accepts_id_version_and_number(sql_root):
    files = chain.load_chain(sql_root)
    assert chain.find(files, "V0002").id == "V0002__roles_and_archive"
    assert chain.find(files, "2").id == "V0002__roles_and_archive"
    assert chain.find(files, "V0002__roles_and_archive.sql").id == "V0002__roles_and_archive"
