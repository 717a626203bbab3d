import pytest

from d3lm.plugins import catalogue
from d3lm.registry import Registry, UnknownPluginError


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
