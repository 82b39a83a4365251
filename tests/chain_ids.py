"""Which versioned file carries each concern of the chain.

Tests that must name a migration name its concern here, never a version number:
the chain may be re-cut, and only this map follows it. Several concerns may live
in one file.
"""

BASELINE = "V0001__baseline"

CHAIN = {
    "baseline": "V0001__baseline",
    "roles": "V0002__roles_and_archive",
    "legacy_hardening": "V0003__legacy_append_only_hardening",
    "archive": "V0002__roles_and_archive",
    "lab_status_failed": "V0004__lab_version",
    "lab_version": "V0004__lab_version",
    "lab_version_guards": "V0005__lab_version_guards",
    "session_columns": "V0006__lab_session_columns_and_verification_attempt",
    "verification_attempt": "V0006__lab_session_columns_and_verification_attempt",
    "attempt_guards": "V0007__lab_session_and_attempt_guards",
    "lifecycle": "V0007__lab_session_and_attempt_guards",
    "identity_guard": "V0007__lab_session_and_attempt_guards",
    "session_backfill": "V0008__lab_session_backfill",
    "legacy_copy": "V0009__verification_attempt_copy",
    "session_constraints": "V0010__lab_session_constraints",
    "restorable_timestamps": "V0011__lab_session_constraints_validate",
    "session_constraints_validate": "V0011__lab_session_constraints_validate",
    "session_not_null": "V0012__lab_session_version_not_null",
    "one_active": "V0013__lab_session_one_active",
    "canonical_url": "V0014__github_repo_mapping",
    "repo_mapping": "V0014__github_repo_mapping",
    "repo_mapping_guards": "V0015__github_repo_mapping_guards",
    "repo_mapping_backfill_procedure": "V0014__github_repo_mapping",
    "repo_mapping_backfill": "V0016__github_repo_mapping_backfill",
    "lab_attempt": "V0017__push_ledger_and_job_queue_tables",
    "verification_job": "V0017__push_ledger_and_job_queue_tables",
    "lab_attempt_guards": "V0018__push_ledger_and_job_queue_guards",
    "verification_job_guards": "V0018__push_ledger_and_job_queue_guards",
    "auditlog_webhook_guard": "V0018__push_ledger_and_job_queue_guards",
    "push_api": "V0019__push_and_queue_api",
    "queue_api": "V0019__push_and_queue_api",
    "ledger_checkpoint": "V0020__ledger_checkpoint",
    "ledger_checkpoint_guards": "V0021__ledger_checkpoint_guards",
}


def version_of(concern: str) -> str:
    """The 4-digit version ("V0012") of the file that carries ``concern``."""
    return CHAIN[concern].split("__", 1)[0]
