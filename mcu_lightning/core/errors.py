"""The one exception type for a user's input that cannot run: the CLI prints it as one ``error:`` line.

Raised where the problem is found (a checkpoint of another curve shape, a non-finite learning rate once the
optimizer is built), also during ``Trainer.fit``, and caught by ``mcu`` (``mcu_lightning/cli/errors.py``); other
exceptions keep their traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A config, file or argument that cannot run as given; the message names it and the fix."""
