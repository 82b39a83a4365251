"""The attack suite: every test is an attack that must be refused.

Modules = categories: test_privilege, test_search_path, test_hostile_input,
test_races, test_faults, test_identity (who or what a row belongs to),
test_backup (dump and restore of extreme accepted values, then verify). conftest.py counts attacks tried / blocked /
succeeded per category and prints the table at the end of the run.

The data the attacks run on comes from tests/builders.py (``seed_world`` and the
builders of users, labs, sessions, pushes and jobs), as for every other test.
"""
