import math

import torch

from core.data.disk import RADIUS, disk_dataset, disk_labels


def test_disk_has_area_one_half():
    assert math.pi * RADIUS**2 == 0.5 or abs(math.pi * RADIUS**2 - 0.5) < 1e-15


def test_points_are_uniform_in_the_unit_square_and_about_half_are_inside():
    x, y = disk_dataset(20000, torch.Generator().manual_seed(0), torch.float64)
    assert x.shape == (20000, 2) and y.shape == (20000, 1)
    assert x.min() >= 0 and x.max() < 1
    assert abs(y.mean().item() - 0.5) < 0.015  # 3.5 sigma at n = 20000
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_labels_follow_the_disk():
    points = torch.tensor(
        [[0.5, 0.5], [0.5 + RADIUS * 0.999, 0.5], [0.5 + RADIUS * 1.001, 0.5], [0.0, 0.0], [1.0, 1.0]],
        dtype=torch.float64,
    )
    assert disk_labels(points).flatten().tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_same_seed_same_data_other_seed_other_data():
    a = disk_dataset(100, torch.Generator().manual_seed(1))
    b = disk_dataset(100, torch.Generator().manual_seed(1))
    c = disk_dataset(100, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
