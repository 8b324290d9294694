"""The study layer: ``mcu experiment`` runs a whole MCU study from one YAML.

``schema``: the YAML as dataclasses; ``validate``: the checks before any stage; ``build``: objects from class
specs; ``stage``: one unit of work; ``identity``: what a stage was made from; ``lock``: one study a folder;
``runner``: the stages in order; ``stages``: what each kind runs; ``uses``: merges and what reads a tested curve
(ensembles, the plane, export_best); ``grid``: the paper's grid, a study per forget split (``mcu grid``);
``cli``: the commands.
"""
