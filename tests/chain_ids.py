"""Which versioned file carries each concern of the chain.

Tests that must name a migration name its concern here, never a version number:
the chain may be re-cut, and only this map follows it. Several concerns may live
in one file.
"""

BASELINE = "V0001__baseline"

CHAIN = {
    "baseline": "V0001__baseline",
    "roles": "V0002__roles",
    "legacy_hardening": "V0003__legacy_append_only_hardening",
    "archive": "V0004__rollback_archive",
    "lab_status_failed": "V0005__lab_status_failed",
    "lab_version": "V0006__lab_version",
    "lab_version_guards": "V0007__lab_version_guards",
    "session_columns": "V0008__lab_session_version_columns",
    "verification_attempt": "V0009__verification_attempt",
    "attempt_guards": "V0010__verification_attempt_guards",
    "lifecycle": "V0011__lab_session_lifecycle_v2",
    "session_backfill": "V0012__lab_session_backfill",
    "legacy_copy": "V0013__verification_attempt_copy",
    "session_constraints": "V0014__lab_session_constraints",
    "session_constraints_validate": "V0015__lab_session_constraints_validate",
    "session_not_null": "V0016__lab_session_version_not_null",
    "one_active": "V0017__lab_session_one_active",
    "canonical_url": "V0020__canonical_repo_url",
    "repo_mapping": "V0021__github_repo_mapping",
    "repo_mapping_guards": "V0022__github_repo_mapping_guards",
    "repo_mapping_backfill_procedure": "V0023__github_repo_mapping_backfill_procedure",
    "repo_mapping_backfill": "V0024__github_repo_mapping_backfill",
    "lab_attempt": "V0025__lab_attempt",
    "lab_attempt_guards": "V0026__lab_attempt_guards",
    "push_api": "V0030__record_push",
    "verification_job": "V0040__verification_job",
    "verification_job_guards": "V0041__verification_job_guards",
    "queue_api": "V0042__verification_job_api",
    "restorable_timestamps": "V0057__restorable_timestamps",
    "ledger_checkpoint": "V0070__ledger_checkpoint",
    "ledger_checkpoint_guards": "V0071__ledger_checkpoint_guards",
}


def version_of(concern: str) -> str:
    """The 4-digit version ("V0012") of the file that carries ``concern``."""
    return CHAIN[concern].split("__", 1)[0]
