"""Models a module only reads (a loss's reference, a teacher): loaded once, in eval mode, without gradients."""

from __future__ import annotations

from torch import nn

from mcu_lightning.core.errors import InputError


def load_frozen(source: str | None, what: str = "reference") -> nn.Module:
    """Load a model that is only read (a reference or a teacher): eval mode, no gradients."""
    if source is None:
        raise InputError(f"{what}, but no path was given; set `reference:` to the starting model's folder")
    from mcu_lightning.models.io import load_model

    try:
        model = load_model(source)
    except Exception as err:  # one clear line before any training starts
        raise InputError(
            f"{what}, but {source!r} could not be loaded ({err}); "
            "pass `reference:` with a save_pretrained folder (e.g. the starting model's)"
        ) from err
    return model.requires_grad_(False).eval()
