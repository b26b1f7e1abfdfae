"""Every experiment config in configs/ resolves against the schema, and its base chain is applied."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hde_kit.config import ConfigError, load_config, read_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / 'configs').glob('*.yaml'))

@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_resolves(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert OmegaConf.is_config(cfg) and cfg.gnn.num_layers >= 1

def test_inheritance_chain():
    cfg = load_config(CONFIGS[0].parent / 'medhop.yaml')
    # from medhop, minilm_wikihop, graph_transformer_base and base respectively
    assert (cfg.data.dataset, cfg.gnn.hidden_size, cfg.gnn.use_transformer_block, cfg.data.hops) == ('medhop', 384, True, 2)
    assert 'base' not in read_yaml(CONFIGS[0].parent / 'medhop.yaml')

def test_bad_key_names_file_and_valid_keys(tmp_path):
    (tmp_path / 'x.yaml').write_text(f"base: {CONFIGS[0]}\ngnn: {{num_layer: 2}}\n")
    with pytest.raises(ConfigError, match=r"x\.yaml.*gnn\.num_layer'.*num_layers"):
        load_config(tmp_path / 'x.yaml')
