"""Fast ISM (maize_ddp.fast_ism): every mutant's prediction equals a full forward pass of the
mutated sequence, whatever the model's strides, pools, paddings and N positions."""
import pytest
import torch

from maize_ddp import attribution, fast_ism
from maize_ddp.inference import Predictor
from maize_ddp.model import BasenjiModel


class FullPasses(BasenjiModel):
    """BasenjiModel whose forward is its own: fast ISM must not touch it (the reference)."""

    def forward(self, x):
        return super().forward(x)


def trained_like(model_class, **kwargs):
    """A model in eval mode with BatchNorm statistics and affine weights far from the identity,
    so that a wrong window or a wrong splice shows in the output."""
    torch.manual_seed(0)
    model = model_class(**kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return model.eval()


GEOMETRIES = [
    dict(seq_len=170, pool1ks=4, pool2ks=2, pool3ks=2, convdc=3),  # the core-promoter preset
    dict(seq_len=3020, num_targets=2),  # the gene-window default
    dict(seq_len=301, conv1st=2, pool1ks=3, pool2ks=3, pool3ks=2, convdc=2),  # a strided first conv, odd pools
    dict(seq_len=97, pool1ks=2, pool2ks=2, pool3ks=2, convdc=2, conv2ks=7, conv2pd=1, conv3pd=0),  # uneven padding
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"L{g['seq_len']}")
def test_every_mutant_equals_a_full_forward_pass(geometry):
    model = trained_like(BasenjiModel, **geometry)
    fast = fast_ism.FastISM(model)
    length = geometry["seq_len"]
    torch.manual_seed(1)
    codes = torch.randint(0, 5, (2, length), dtype=torch.uint8)  # with N positions
    codes[1, :3] = 4
    # both ends (where windows are clamped) and positions in between
    where = torch.unique(torch.cat([torch.arange(40), torch.arange(length - 40, length),
                                    torch.randint(0, length, (40,))]))
    seq = torch.arange(2).repeat_interleave(len(where))
    pos = where.repeat(2)
    base = torch.randint(0, 4, (len(pos),))
    mutants = codes[seq].clone()
    mutants[torch.arange(len(seq)), pos] = base.to(torch.uint8)
    with torch.no_grad():
        cache = fast.cache(codes)
        got = torch.cat([fast.predict(cache, seq[i:i + 97], pos[i:i + 97], base[i:i + 97])
                         for i in range(0, len(seq), 97)])
        want = torch.cat([model(mutants[i:i + 97]) for i in range(0, len(seq), 97)])
        unchanged = model(codes)[seq]
    assert (want - unchanged).abs().max() > 1e-2  # the substitutions matter: the check can fail
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rc_average", [False, True])
def test_ism_scores_equal_those_of_full_passes(rc_average):
    geometry = GEOMETRIES[0]
    torch.manual_seed(2)
    codes = torch.randint(0, 5, (3, geometry["seq_len"]), dtype=torch.uint8)
    cpu = torch.device("cpu")
    fast = attribution.ism(Predictor(trained_like(BasenjiModel, **geometry), cpu, rc_average=rc_average), codes,
                           batch_size=100)
    full = attribution.ism(Predictor(trained_like(FullPasses, **geometry), cpu, rc_average=rc_average), codes,
                           batch_size=100)
    assert full.abs().max() > 1e-2
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)


def test_a_weighted_objective_is_the_weighted_sum_of_target_scores():
    model = Predictor(trained_like(BasenjiModel, **{**GEOMETRIES[0], "num_targets": 2}), torch.device("cpu"))
    codes = torch.randint(0, 4, (2, 170), dtype=torch.uint8)
    weights = torch.tensor([0.5, -2.0])
    got = attribution.ism(model, codes, weights=weights)
    want = 0.5 * attribution.ism(model, codes, target=0) - 2.0 * attribution.ism(model, codes, target=1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_only_basenji_models_as_built_and_in_eval_mode_take_the_fast_path():
    """Anything the fast path would get wrong goes through full passes instead."""
    geometry = GEOMETRIES[0]

    class SameForward(BasenjiModel):
        pass

    def changed(change):
        model = BasenjiModel(**geometry).eval()
        change(model)
        return model

    assert fast_ism.supports(BasenjiModel(**geometry).eval())
    assert not fast_ism.supports(BasenjiModel(**geometry).train())
    assert not fast_ism.supports(FullPasses(**geometry).eval())
    assert not fast_ism.supports(SameForward(**geometry).eval())  # a subclass may rebuild its layers
    assert not fast_ism.supports(torch.nn.Conv1d(4, 1, 3).eval())
    assert not fast_ism.supports(changed(lambda m: m.conv_block_2[2].train()))  # one BatchNorm in training mode
    assert not fast_ism.supports(changed(lambda m: setattr(m.conv_block_1[1], "padding_mode", "reflect")))
    assert not fast_ism.supports(changed(lambda m: setattr(m.conv_block_2[1], "dilation", (2,))))
    assert not fast_ism.supports(changed(lambda m: setattr(m.conv_block_3[3], "stride", 1)))


def test_a_sequence_of_another_length_is_refused_as_by_the_model():
    model = BasenjiModel(**GEOMETRIES[0]).eval()
    with pytest.raises(ValueError, match="model built for seq_len 170, got input of length 171"):
        attribution.ism(Predictor(model, "cpu"), torch.zeros(1, 171, dtype=torch.uint8))
