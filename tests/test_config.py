import pytest

from d3lm.config import ConfigError, load_config, load_run_config
from d3lm.params import CONFIG_RANGES
from d3lm.stages.finetune import RANGES as FINETUNE_RANGES
from d3lm.stages.ranges import RANGES as RUN_RANGES


def test_layers_merge_in_order(tmp_path):
    extra = tmp_path / "ablation.yaml"
    extra.write_text("tokenizer:\n  name: kmer\n  params: {k: 3}\ntrainer:\n  max_steps: 7\n")
    cfg = load_config("micro", [extra], ["trainer.max_steps=9", "sample.sampler.params.steps=5"])
    assert cfg.model.preset == "micro"  # from the scale
    assert cfg.tokenizer.name == "kmer" and cfg.tokenizer.params.k == 3  # from the file
    assert cfg.trainer.max_steps == 9  # the command line wins
    assert cfg.sample.sampler.params.steps == 5  # plugin params are open


def test_unknown_keys_are_errors_naming_the_source(tmp_path):
    with pytest.raises(ConfigError, match=r"command-line overrides: .*max_stepz"):
        load_config("micro", overrides=["trainer.max_stepz=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(files=[bad])


def test_unknown_scale_lists_known_scales():
    with pytest.raises(FileNotFoundError, match=r"known scales: .*micro"):
        load_config("huge")


def test_run_config_round_trips(tmp_path):
    from omegaconf import OmegaConf

    cfg = load_config("micro")
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    again = load_run_config(tmp_path, ["trainer.max_steps=99"])
    assert again.trainer.max_steps == 99
    assert again.model == cfg.model
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        load_run_config(tmp_path / "nope")


def test_value_rules_apply_to_every_config_key_of_their_name():
    """One rule per key name, used by the run and the fine-tuning config alike: no rule for a
    name that no config declares, and a key of both (``weight_decay``) checked the same way."""
    tables = [RUN_RANGES, FINETUNE_RANGES]
    assert {key.rsplit(".", 1)[-1] for table in tables for key in table} == set(CONFIG_RANGES)
    assert RUN_RANGES["optim.weight_decay"] is FINETUNE_RANGES["weight_decay"]
    assert "trainer.max_steps" in RUN_RANGES and "max_steps" in FINETUNE_RANGES
    assert not any(key.startswith("sample.") for key in RUN_RANGES)  # SAMPLE_RANGES' own
