"""The experiments as data: configs/ comes from dm_ssl.experiments.grids."""

from pathlib import Path

from dm_ssl.experiments import grids

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_exactly_what_the_grids_write():
    configs = grids.all_configs()
    shipped = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}
    assert set(configs) == shipped and len(shipped) == 346
    for rel, cfg in configs.items():
        assert (ROOT / "configs" / rel).read_text() == grids.render(cfg), rel
