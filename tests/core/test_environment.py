"""The host id: the fingerprint, or the one the user names (LOCALBENCH_HOST)."""
import pytest

from localbench.core import environment


def test_a_host_named_by_the_user_is_the_host_and_is_recorded(monkeypatch):
    monkeypatch.delenv(environment.HOST_ENV, raising=False)
    assert "host_set_by_user" not in environment.manifest()
    monkeypatch.setenv(environment.HOST_ENV, "clone-b")
    m = environment.manifest()
    assert m["host_set_by_user"] == "clone-b" == environment.fingerprint(m) == environment.fingerprint()
    monkeypatch.setenv(environment.HOST_ENV, "../up")           # it names a folder: results/<host>/
    with pytest.raises(SystemExit, match="folder name"):
        environment.manifest()
