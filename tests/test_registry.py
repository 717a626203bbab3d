import pytest
from omegaconf import OmegaConf

from d3lm.config import load_config
from d3lm.plugins import builtin_packages, catalogue, load_plugins
from d3lm.registry import PLUGIN_KEYS, REGISTRIES, WILDCARD, Registry, UnknownPluginError


def test_build_passes_params_and_rejects_unknown_names_and_params():
    reg: Registry = Registry("test_widget")

    @reg.register("square")
    class Square:
        """A square."""

        def __init__(self, side: int = 1) -> None:
            self.side = side

    assert reg.build("square", {"side": 3}).side == 3
    with pytest.raises(UnknownPluginError, match="known test_widget plugins: square"):
        reg.build("circle")
    with pytest.raises(TypeError, match="it accepts: side"):
        reg.build("square", {"radius": 2})
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("square")(Square)
    assert reg.describe() == {"square": "A square."}


def test_catalogue_lists_every_builtin_plugin_kind():
    plugins = catalogue()
    assert {"nt6mer", "kmer"} <= set(plugins["tokenizer"])
    assert {"linear", "cosine", "loglinear", "polynomial"} <= set(plugins["schedule"])
    assert "masked_diffusion" in plugins["objective"]
    assert {"random"} <= set(plugins["sampler"])
    assert {"micro", "tiny", "nt-v2-50m", "nt-v2-100m"} <= set(plugins["backbone"])
    assert "dhs" in plugins["dataset"]


@pytest.fixture
def gadgets():
    """A registry of a kind that is gone again after the test."""
    yield Registry("test_gadget", config_keys=["gadget.name"])
    del REGISTRIES["test_gadget"]


def test_plugin_keys_and_wildcards_come_from_the_registries(gadgets):
    reg = gadgets

    @reg.register("b", examples=[{}, {"size": 2}])
    @reg.register("a")
    class Gadget:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    assert PLUGIN_KEYS["gadget.name"] is reg
    assert reg.expand(["b", WILDCARD]) == ["b", "a"]
    assert reg.expand(["b", "b"]) == ["b", "b"]  # no wildcard: as written
    assert reg.examples("a") == [{}] and reg.examples("b") == [{}, {"size": 2}]
    reg.unregister("a")
    assert reg.names() == ["b"]
    with pytest.raises(UnknownPluginError):
        reg.unregister("a")


def test_every_plugin_key_is_a_key_of_the_run_config():
    """Or a parameter of a plugin the config names (a sampler's ``order``)."""
    cfg = load_config(None)
    for key, registry in PLUGIN_KEYS.items():
        section = key.rsplit(".", 1)[0] if ".params." in key else key
        assert OmegaConf.select(cfg, section, default=KeyError) is not KeyError, key
        assert registry.config_keys and key in registry.config_keys


def test_builtin_packages_are_the_registries_homes():
    load_plugins()
    homes = builtin_packages()
    assert "d3lm.tokenizers" in homes and "d3lm.baselines" in homes
    assert all(r.home in homes for r in REGISTRIES.values() if r.home is not None)
