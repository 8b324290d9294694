"""``python -m mcu_lightning.cli``: the ``mcu`` command."""

from mcu_lightning.cli.dispatch import main

main()
