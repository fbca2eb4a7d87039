import torch

from gym_diamond.rng import BatchedGenerator


def test_rows_do_not_depend_on_batch_neighbours():
    alone = BatchedGenerator([7])
    batch = BatchedGenerator([3, 7, 11])
    for _ in range(3):
        torch.testing.assert_close(alone.normal(3, 4)[0], batch.normal(3, 4)[1], rtol=0, atol=0)


def test_same_seed_same_numbers_and_different_seeds_differ():
    a, b = BatchedGenerator([1, 2]).normal(100), BatchedGenerator([1, 2]).normal(100)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


def test_draws_are_standard_normal_and_uniform():
    g = BatchedGenerator(list(range(64)))
    x = g.normal(4096)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01
    u = g.uniform(4096)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.005
    # consecutive draws and neighbouring rows are uncorrelated
    y = g.normal(4096)
    assert abs((x * y).mean().item()) < 0.01
    assert abs((x[:-1] * x[1:]).mean().item()) < 0.01


def test_reseed_restarts_only_masked_rows():
    g = BatchedGenerator([1, 2])
    first = g.normal(5)
    g.normal(5)
    g.reseed(torch.tensor([True, False]), torch.tensor([1, 0]))
    again = g.normal(5)
    assert torch.equal(again[0], first[0]) and not torch.equal(again[1], first[1])


def test_large_seeds_are_accepted():
    g = BatchedGenerator([2**62 + 5, 2**40])
    assert torch.isfinite(g.normal(10)).all()
