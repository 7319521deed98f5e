import numpy as np
import pytest
import torch

from maize_ddp.codes import codes_to_onehot
from maize_ddp.model import BasenjiModel, ModelConfig, flat_length


@pytest.mark.parametrize("seq_len,targets", [(3020, 1), (170, 1), (1000, 3), (500, 2)])
def test_output_shape(seq_len, targets):
    model = BasenjiModel(num_targets=targets, seq_len=seq_len).eval()
    codes = torch.randint(0, 5, (3, seq_len), dtype=torch.uint8)
    assert model(codes).shape == (3, targets)


def test_flat_length_matches_the_layers():
    # The Linear layer's input size must equal what the conv stack really produces.
    for seq_len in (170, 301, 1000, 3020):
        model = BasenjiModel(seq_len=seq_len).eval()
        x = model.one_hot(torch.zeros(1, seq_len, dtype=torch.uint8))
        for block in (model.conv_block_1, model.conv_block_2, model.conv_block_3, model.dilated_tower):
            x = block(x)
        assert x.shape[-1] == model.flat_len == flat_length(model.config)


def test_codes_and_onehot_give_identical_outputs():
    torch.manual_seed(0)
    model = BasenjiModel(num_targets=2, seq_len=300).eval()
    codes = np.random.default_rng(0).integers(0, 5, size=(4, 300)).astype(np.uint8)  # includes N
    onehot = torch.from_numpy(codes_to_onehot(codes, "N4L"))
    out_codes = model(torch.from_numpy(codes))
    out_onehot = model(onehot)
    torch.testing.assert_close(out_codes, out_onehot, rtol=0, atol=0)


def test_n_is_an_all_zero_column():
    model = BasenjiModel(seq_len=200)
    codes = torch.tensor([[0, 1, 2, 3, 4]], dtype=torch.uint8)
    onehot = model.one_hot(codes)[0]
    assert onehot.shape == (4, 5)
    assert torch.equal(onehot[:, :4], torch.eye(4))
    assert torch.equal(onehot[:, 4], torch.zeros(4))


def test_init_statistics():
    torch.manual_seed(0)
    model = BasenjiModel(seq_len=3020)
    conv = model.conv_block_2[1].weight
    std = (2.0 / conv[0].numel()) ** 0.5
    # truncated at +-2 std; the truncated normal's sd is ~0.88 of the untruncated one
    assert conv.abs().max() <= 2 * std + 1e-7
    assert conv.std().item() == pytest.approx(0.88 * std, rel=0.05)
    assert abs(conv.mean().item()) < 0.05 * std
    for m in (model.conv_block_1[2], model.conv_block_4[2]):
        assert torch.equal(m.weight, torch.ones_like(m.weight))
    for block in model.dilated_tower:
        assert torch.equal(block.body[5].weight, torch.zeros_like(block.body[5].weight))


def test_residual_blocks_start_as_identity():
    model = BasenjiModel(seq_len=500).eval()
    x = torch.randn(2, model.config.conv3kc, 7)
    torch.testing.assert_close(model.dilated_tower(x), x)


def test_defaults_are_the_report():
    c = ModelConfig()
    assert (c.conv1kc, c.conv2kc, c.conv3kc) == (64, 64, 72)
    assert (c.conv1ks, c.conv2ks, c.conv3ks) == (15, 5, 5)
    assert (c.pool1ks, c.pool2ks, c.pool3ks) == (8, 4, 4)
    assert (c.convdc, c.convdkc, c.convdks, c.num_targets, c.n_channel) == (6, 32, 3, 1, 4)


def test_too_short_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="seq_len 20 is too short"):
        BasenjiModel(seq_len=20)


def test_wrong_input_length_is_a_clear_error():
    model = BasenjiModel(seq_len=200)
    with pytest.raises(ValueError, match="seq_len 200"):
        model(torch.zeros(1, 300, dtype=torch.uint8))


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="unknown model hyperparameters"):
        BasenjiModel(seq_len=200, conv9kc=3)


def test_a_layer_that_cannot_be_built_is_named():
    from maize_ddp.errors import ConfigError

    for hparams, flag in [({"conv1kc": 0}, "--conv1kc"), ({"pool1ks": 0}, "--pool1ks"), ({"convdc": -1}, "--convdc")]:
        with pytest.raises(ConfigError, match=flag):
            BasenjiModel(seq_len=200, **hparams)
    assert len(BasenjiModel(seq_len=200, convdc=0).dilated_tower) == 0  # no tower is a valid model


def tower_sees_only_padding(model: BasenjiModel, codes: torch.Tensor) -> list[bool]:
    """For each dilated block: does its output at every position ignore the other positions?
    (Measured: perturb the block's input at one position, see whether any other output moves.)"""
    model.eval()
    x = model.conv_block_3(model.conv_block_2(model.conv_block_1(model.one_hot(codes))))
    moot = []
    for block in model.dilated_tower:
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                torch.nn.init.ones_(m.weight)  # the last BN starts at zero: make the body visible
        base = block(x)
        bumped = x.clone()
        bumped[..., 0] += 1.0
        moved = (block(bumped) - base).abs().sum(dim=(0, 1))
        moot.append(bool((moved[1:] == 0).all()))
        x = base
    return moot


def test_geometry_warning_matches_which_blocks_see_only_padding():
    from maize_ddp.model import GeometryWarning, build_model, geometry_warning, wasted_dilated_blocks

    torch.manual_seed(0)
    for cfg in (ModelConfig(seq_len=170), ModelConfig(seq_len=1000), ModelConfig(seq_len=3020),
                ModelConfig(seq_len=170, pool1ks=2, pool2ks=2, pool3ks=2, convdc=4)):
        model = BasenjiModel(**vars(cfg))
        moot = tower_sees_only_padding(model, torch.randint(0, 4, (2, cfg.seq_len), dtype=torch.uint8))
        flat = flat_length(cfg)
        assert [2 ** i for i, m in enumerate(moot) if m] == wasted_dilated_blocks(cfg, flat)
        assert (geometry_warning(cfg) is not None) == (sum(moot) >= 2)
    with pytest.warns(GeometryWarning, match="seq_len 170 leaves 1 position"):
        build_model(ModelConfig(seq_len=170))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(ModelConfig(seq_len=3020))  # the gene-window default: no warning
        BasenjiModel(seq_len=170)  # loading a trained model does not warn again
