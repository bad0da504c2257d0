#!/usr/bin/env python
"""Write configs/{ssl,transfer,supervised}/ from dm_ssl.experiments.grids (their one source).

    .venv/bin/python scripts/make_configs.py
"""

from dm_ssl.experiments.grids import CONFIGS_ROOT, write_configs

if __name__ == "__main__":
    written, unchanged = write_configs()
    print(f"{written} configs written, {unchanged} unchanged under {CONFIGS_ROOT}")
