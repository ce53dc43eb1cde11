import pytest

from movierec.config import MFConfig, PipelineConfig, mf_config_from_dict


def test_paths_are_absolute_and_layout_is_standard(tmp_path):
    c = PipelineConfig.from_output_dir("data", str(tmp_path / "out"))
    assert c.pipeline_root == str(tmp_path / "out" / "pipeline")
    assert c.serving_model_dir("mf") == str(tmp_path / "out" / "serving" / "mf")
    assert c.data_dir.startswith("/") and c.schema_path.endswith("schema.pbtxt")


@pytest.mark.parametrize("kwargs,name", [
    ({"eval_percent": 0}, "eval_percent=0"),
    ({"max_bad_records": -1}, "max_bad_records=-1"),
    ({"max_k": 0}, "max_k=0"),
    ({"pipeline_name": "a b"}, "pipeline_name='a b'"),
])
def test_invalid_pipeline_settings_name_the_field(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"config: {name}"):
        PipelineConfig.from_output_dir("d", str(tmp_path), **kwargs)


def test_mf_config_round_trip_and_validation():
    c = MFConfig(embedding_dim=8, epochs=2)
    assert mf_config_from_dict(PipelineConfig.from_output_dir("d", "/tmp/o", mf=c).trainer_config()["mf"]) == c
    with pytest.raises(ValueError, match="mf.learning_rate=0"):
        MFConfig(learning_rate=0)
    with pytest.raises(ValueError, match=r"unknown MF settings \['dims'\]"):
        mf_config_from_dict({"dims": 3})
    with pytest.raises(Exception):
        c.epochs = 3  # frozen


@pytest.mark.parametrize("kwargs, name", [
    ({"objective": "bpmf"}, "mf.objective"),
    ({"objective": "bayes", "bayes_implicit": "items"}, "mf.bayes_implicit"),
    ({"objective": "bayes", "bayes_samples": 0}, "mf.bayes_samples"),
    ({"objective": "bayes", "bayes_thin": 0}, "mf.bayes_thin"),
    ({"bayes_export_rank": 0}, "mf.bayes_export_rank"),
    ({"hybrid": "yes"}, "mf.hybrid"),
    ({"ials_feature_reg": 0}, "mf.ials_feature_reg"),
    ({"bayes_dim": 0}, "mf.bayes_dim"),
])
def test_mf_objective_settings_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=f"config: {name}="):
        MFConfig(**kwargs)


def test_bayes_defaults():
    assert MFConfig(objective="bayes").embedding_dim == MFConfig().bayes_dim == 16
