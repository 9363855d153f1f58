"""genie.training.draws: a chain's timestep and noise depend on (seed, epoch, item, stream) alone,
not on its batch, its padding or its neighbours."""

from __future__ import annotations

import torch

from genie.training.draws import TRAIN_STREAM, VALIDATION_STREAM, chain_seed, draw_chain_noise


def _draw(lengths, items, epochs, *, n, stream=TRAIN_STREAM, seed=7):
    return draw_chain_noise(
        lengths=torch.tensor(lengths), items=torch.tensor(items), epochs=torch.tensor(epochs),
        seed=seed, stream=stream, num_timesteps=1000, n=n, dtype=torch.float64,
        device=torch.device("cpu"),
    )  # fmt: skip


def test_a_chain_draws_the_same_in_any_batch_and_padding():
    t_pair, noise_pair = _draw([5, 20], [3, 8], [2, 2], n=20)
    t_alone, noise_alone = _draw([5], [3], [2], n=5)
    assert t_pair[0] == t_alone[0] and 1 <= int(t_pair.min()) and int(t_pair.max()) <= 1000
    torch.testing.assert_close(noise_pair[0, :5], noise_alone[0], rtol=0, atol=0)
    assert noise_pair[0, 5:].eq(0).all()  # padding holds no noise
    # the reference: the chain's own generator, seeded by hand from its key
    generator = torch.Generator().manual_seed(chain_seed(seed=7, epoch=2, item=8, stream=0))
    t_ref = torch.randint(1, 1001, (1,), generator=generator)
    noise_ref = torch.randn((20, 3), generator=generator, dtype=torch.float64)
    assert t_pair[1] == t_ref[0]
    torch.testing.assert_close(noise_pair[1], noise_ref, rtol=0, atol=0)


def test_items_epochs_streams_and_seeds_draw_differently():
    _, base = _draw([10], [1], [0], n=10)
    for changed in (
        _draw([10], [2], [0], n=10),
        _draw([10], [1], [1], n=10),
        _draw([10], [1], [0], n=10, stream=VALIDATION_STREAM),
        _draw([10], [1], [0], n=10, seed=8),
    ):
        assert not torch.equal(changed[1], base)
