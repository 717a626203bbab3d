import json

import pytest

from d3lm.cli import main


def test_plugins_json_lists_the_core_plugins(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = json.loads(capsys.readouterr().out)
    assert {"nt6mer", "kmer"} <= set(plugins["tokenizer"])
    assert {"linear", "cosine", "loglinear", "polynomial"} <= set(plugins["schedule"])
    assert "random" in plugins["sampler"]


def test_plugins_text_lists_kinds(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer:" in out and "nt6mer" in out


def test_bad_config_is_a_clear_error_not_a_traceback(capsys, tmp_path):
    assert main(["train", "--scale", "micro", "trainer.max_stepz=1"]) == 2
    assert "max_stepz" in capsys.readouterr().err
    assert main(["train", f"resume={tmp_path}"]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_stray_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["plugins", "oops"])
