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


def test_dm_configs_are_the_official_values_but_one_key():
    """SSL DM configs: the official DMixMatch values except L_ll's ramp (docs/results.md,
    "Should the paper configs ramp L_ll?"); the transfer DM configs keep the official ramp."""
    import yaml

    ssl = sorted((ROOT / "configs" / "ssl").rglob("*_dm_*.yaml"))
    transfer = sorted((ROOT / "configs" / "transfer").rglob("*_dm_*.yaml"))
    assert len(ssl) >= 24 and transfer
    for path in ssl:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["dm_ramp_ll"] == "cosine", path
        official = {k: cfg[k] for k in grids.DM_KEYS} | {"dm_ramp_ll": "none"}
        assert official == grids.DM_KEYS, path
    for path in transfer:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["dm_ramp_ll"] == "none" and cfg["dm_w_ll"] == 1.0, path
