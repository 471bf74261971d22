import json

import pytest

from aeloops.runs.config import TrainConfig, apply_overrides, load_config_file, merge


def test_defaults_are_valid_and_serializable():
    config = TrainConfig()
    assert json.loads(json.dumps(config.to_dict()))["model"] == "dense"


def test_toml_and_json_files_load(tmp_path):
    (tmp_path / "run.toml").write_text('model = "sparse"\nepochs = 3\n[objective.sparsity]\nweight = 1e-5\n')
    (tmp_path / "run.json").write_text(json.dumps({"model": "conv", "mode": "graph"}))
    toml_config = merge(TrainConfig(), load_config_file(tmp_path / "run.toml"), "run.toml")
    assert (toml_config.model, toml_config.epochs, toml_config.objective) == (
        "sparse",
        3,
        {"sparsity": {"weight": 1e-5}},
    )
    json_config = merge(TrainConfig(), load_config_file(tmp_path / "run.json"), "run.json")
    assert (json_config.model, json_config.mode) == ("conv", "graph")


def test_overrides_parse_values_and_nest_objective_terms():
    config = apply_overrides(
        TrainConfig(), ["epochs=7", "learning_rate=0.5", "data_dir=/tmp/x", "quiet=true", "objective.bce.weight=2"]
    )
    assert config.epochs == 7 and config.learning_rate == 0.5 and config.data_dir == "/tmp/x" and config.quiet
    assert config.objective == {"bce": {"weight": 2}}


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"batch_size": -3}, ValueError, "batch_size must be a positive integer"),
        ({"epochs": "ten"}, TypeError, "epochs must be a positive integer"),
        ({"epochs": True}, TypeError, "epochs must be a positive integer"),
        ({"mode": "jit"}, ValueError, "mode must be one of auto, xla, graph, eager"),
        ({"precision": "float8"}, ValueError, "precision must be one of"),
        ({"image_size": [32]}, ValueError, "image_size must be 2 positive integers"),
        ({"color_mode": "rgba"}, ValueError, "color_mode must be one of grayscale, rgb"),
        ({"validation_split": 1.5}, ValueError, "validation_split must lie strictly between 0 and 1"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be a positive number"),
        ({"colour": "red"}, ValueError, "unknown setting 'colour'"),
        ({"objective": {"bce": {"scale": 2}}}, ValueError, "Unknown setting objective.bce.scale"),
        ({"objective": {"bce": {"weight": -2}}}, ValueError, "finite and >= 0"),
        ({"objective": {"bce": 2}}, TypeError, "objective.bce must be a table"),
        ({"objective": {"bce": {"reduction": "max"}}}, ValueError, "objective.bce.reduction must be mean or sum"),
    ],
)
def test_bad_settings_are_refused_with_their_source(values, error, message):
    with pytest.raises(error, match=message) as raised:
        merge(TrainConfig(), values, "run.toml")
    assert str(raised.value).startswith("run.toml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs", "key=value"),
        ("=3", "key=value"),
        ("objective.bce=1", "objective.<term>.weight"),
        ("a.b=1", "unknown"),
    ],
)
def test_malformed_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(TrainConfig(), [override])


def test_malformed_config_files(tmp_path):
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ValueError, match="malformed"):
        load_config_file(tmp_path / "bad.toml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a table"):
        load_config_file(tmp_path / "list.json")
    with pytest.raises(ValueError, match="must end in .toml or .json"):
        load_config_file(tmp_path / "run.yaml")
    with pytest.raises(ValueError, match="Cannot read config file"):
        load_config_file(tmp_path / "missing.toml")


def test_a_term_table_sets_the_reduction():
    from aeloops.models import registry
    from aeloops.runs.objective import build_objective

    config = merge(TrainConfig(), {"objective": {"bce": {"reduction": "sum"}}}, "run.toml")
    model = registry.get("dense").build()
    (term,) = build_objective(config, model).terms
    assert (term.name, term.reduction, term.weight) == ("bce", "sum", 1.0)


def test_a_json_config_with_a_key_given_twice_is_refused_as_toml_refuses_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"epochs": 3, "model": "dense", "epochs": 5}')
    with pytest.raises(ValueError, match="malformed: the key 'epochs' is given twice"):
        load_config_file(path)
