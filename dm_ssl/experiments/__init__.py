"""The paper's experiments as data: config grids, tables, ``dm-ssl sweep`` and ``dm-ssl report``.

- :mod:`~dm_ssl.experiments.grids`: the config generators (``configs/`` is written from them);
- :mod:`~dm_ssl.experiments.tables`: each table of the paper (and the repository's own small
  offline experiments) as settings × methods × seeds, with the paper's number per cell;
- :mod:`~dm_ssl.experiments.sweep`: expand a table into runs, skip finished ones, resume
  interrupted ones, launch locally or through submitit on Slurm;
- :mod:`~dm_ssl.experiments.report`: mean ± std over seeds per cell beside the paper's number.
"""
