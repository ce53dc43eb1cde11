"""Paths that are URLs stay URLs: serving's model paths and config files on object stores."""
import os

import pytest

from movierec import filesystems
from movierec.serving import model_config


def test_urls_are_absolute_and_local_paths_are_made_absolute():
    assert filesystems.absolute("s3://bucket/serving/mf") == "s3://bucket/serving/mf"
    assert filesystems.absolute("serving/mf") == os.path.join(os.getcwd(), "serving", "mf")
    assert filesystems.scheme("S3://b/k") == "s3" and filesystems.scheme("/data") == ""


def test_model_paths_on_an_object_store_are_kept_as_given():
    assert model_config.from_flags("mf", "s3://bucket/serving/mf")[0].base_path == "s3://bucket/serving/mf"
    text = '''model_config_list {
      config { name: "mf" base_path: "s3://bucket/serving/mf" }
      config { name: "content" base_path: "content" }
    }'''
    specs = model_config.parse_model_config(text, relative_to="s3://bucket/conf")
    assert [(s.name, s.base_path) for s in specs] == [("mf", "s3://bucket/serving/mf"),
                                                      ("content", "s3://bucket/conf/content")]


def test_a_config_file_that_cannot_be_read_is_an_os_error_naming_it(tmp_path):
    missing = str(tmp_path / "models.config")
    with pytest.raises(OSError, match="models.config"):
        filesystems.read_text(missing)
    (tmp_path / "models.config").write_text('model_config_list { config { name: "m" base_path: "v" } }')
    assert model_config.load_model_config(missing)[0].base_path == str(tmp_path / "v")
