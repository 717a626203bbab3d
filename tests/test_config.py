import pytest

from d3lm.config import ConfigError, load_config, load_run_config


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
