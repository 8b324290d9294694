"""The study layer: ``mcu experiment`` runs a whole MCU study from one YAML.

``schema``: the YAML as dataclasses; ``validate``: the checks before any stage; ``build``: objects from class
specs; ``stage``: one unit of work; ``identity``: what a stage was made from; ``lock``: one study a folder;
``runner``: the stages in order; ``cli``: the command.
"""
