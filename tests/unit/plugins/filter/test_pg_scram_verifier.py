"""pg_scram_verifier: the stored verifier is kept when it belongs to the password, else a new one is made."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.harborfleet.fleet.plugins.filter.fleet import pg_scram_verifier
from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres import password_matches


def test_a_new_verifier_belongs_to_the_password_and_is_kept_on_the_next_run():
    verifier = pg_scram_verifier("CorrectHorse42battery")
    assert verifier.startswith("SCRAM-SHA-256$4096:") and password_matches(verifier, "CorrectHorse42battery", "")
    assert pg_scram_verifier("CorrectHorse42battery", stored=verifier) == verifier
    assert "'" not in verifier and "\\" not in verifier  # safe inside an SQL string literal


def test_a_changed_password_gets_a_new_verifier():
    old = pg_scram_verifier("CorrectHorse42battery")
    new = pg_scram_verifier("AnotherHorse42battery", stored=old)
    assert new != old and password_matches(new, "AnotherHorse42battery", "")
    assert not password_matches(new, "CorrectHorse42battery", "")


@pytest.mark.parametrize("password", ["", None, 42])
def test_a_missing_password_is_an_error(password):
    with pytest.raises(AnsibleFilterError, match="pg_scram_verifier"):
        pg_scram_verifier(password)
