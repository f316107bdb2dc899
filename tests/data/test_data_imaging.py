"""GASF / GADF / MTF against small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ckreg.data.imaging import (episode_images, gaf, mtf, parse_imaging, quantile_bins, resample_matrix,
                                to_images)
from ckreg.errors import UsageError


def test_gasf_and_gadf_by_hand():
    # x = [0, 1, 2] rescales to u = [-1, 0, 1]; sqrt(1 - u^2) = [0, 1, 0]
    x = np.array([0.0, 1.0, 2.0])
    assert gaf(x, "gasf").tolist() == [[1, 0, -1], [0, -1, 0], [-1, 0, 1]]
    assert gaf(x, "gadf").tolist() == [[0, 1, 0], [-1, 0, 1], [0, -1, 0]]
    # cos(phi_i + phi_j) with phi = arccos(u): the closed form is the definition
    y = np.array([3.0, -1.0, 0.5, 2.0])
    u = (2 * y - y.max() - y.min()) / (y.max() - y.min())
    phi = np.arccos(u)
    assert np.allclose(gaf(y, "gasf"), np.cos(phi[:, None] + phi[None, :]))
    assert np.allclose(gaf(y, "gadf"), np.sin(phi[:, None] - phi[None, :]))


def test_constant_series_is_all_zero_angle():
    assert gaf(np.full(3, 7.0), "gasf").tolist() == [[-1.0] * 3] * 3    # u = 0, phi = pi/2: cos(pi) = -1
    assert not gaf(np.full(3, 7.0), "gadf").any()


def test_mtf_by_hand():
    # x = [1, 2, 1, 2], Q = 2: edge 1.5, bins [0, 1, 0, 1]; transitions 0->1, 1->0, 0->1
    assert quantile_bins([1, 2, 1, 2], 2).tolist() == [0, 1, 0, 1]
    assert mtf(np.array([1.0, 2, 1, 2]), 2).tolist() == [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    # x = [1, 1, 2, 2]: bins [0, 0, 1, 1]; W = [[.5, .5], [0, 1]]
    assert mtf(np.array([1.0, 1, 2, 2]), 2).tolist() == [[.5, .5, .5, .5], [.5, .5, .5, .5], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_resample_matrix_by_hand():
    assert resample_matrix(4, 2).tolist() == [[.5, .5, 0, 0], [0, 0, .5, .5]]
    assert resample_matrix(2, 3).tolist() == [[1, 0], [.5, .5], [0, 1]]
    assert np.array_equal(resample_matrix(5, 5), np.eye(5))
    assert np.allclose(resample_matrix(87, 64).sum(axis=1), 1.0)


def test_stacking_order_padding_and_scale_invariance():
    rng = np.random.default_rng(0)
    ep = rng.normal(size=(10, 3))
    X = np.ones((2, 12, 3))
    X[0, :10] = ep
    X[1, :10] = 5.0 * ep + 2.0                     # a positive affine change of every channel
    mask = np.ones((2, 12), np.uint8)
    mask[:, :10] = 0
    img = to_images(X, mask, "gasf+gadf+mtf", size=8, bins=4)
    assert img.shape == (2, 9, 8, 8) and img.dtype == np.float32
    assert np.allclose(img[0], img[1], atol=1e-5)
    R = resample_matrix(10, 8)
    assert np.allclose(img[0, 1], gaf((R @ ep).T[1], "gasf"), atol=1e-6)            # channel 1 of GASF
    assert np.allclose(img[0, 3 + 2], gaf((R @ ep).T[2], "gadf"), atol=1e-6)       # channel 2 of GADF
    assert np.allclose(img[0, 6 + 0], R @ mtf(ep[:, 0], 4) @ R.T, atol=1e-6)       # channel 0 of MTF
    # the padding rows (raw 1.0) are not part of the series
    assert np.allclose(episode_images(ep, ("gasf",), 8), img[0, :3], atol=1e-6)


def test_empty_episode_and_bad_options():
    assert not to_images(np.zeros((1, 4, 2)), np.ones((1, 4)), "mtf", size=4).any()
    for bad in ("gasf+gasf", "fft", "gasf+"):
        with pytest.raises(UsageError):
            parse_imaging(bad)
    assert parse_imaging("GASF+mtf") == ("gasf", "mtf") and parse_imaging(None) == ()
    with pytest.raises(UsageError):
        to_images(np.zeros((1, 4, 2)), None, "gasf", size=1)


def test_cached_images_equal_a_fresh_computation_and_follow_every_parameter():
    from ckreg.data.imaging import cached_images, clear_cache

    clear_cache()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 9, 2)).astype(np.float32)
    mask = np.zeros((3, 9), np.uint8)
    mask[1, 6:] = 1
    a = cached_images(X, mask, ("gasf",), 4)
    assert np.array_equal(a, to_images(X, mask, ("gasf",), 4)) and not a.flags.writeable
    assert cached_images(X.copy(), mask.copy(), "gasf", 4) is a        # same content: no recomputation
    # any change of the episodes, the mask or a parameter is a fresh computation
    for args in [(X, mask, ("gasf",), 5), (X, mask, ("gadf",), 4), (X, mask, ("mtf",), 4, 3), (X, mask, ("mtf",), 4, 4),
                 (X + 1e-3 * (np.arange(9)[None, :, None] ** 2), mask, ("gasf",), 4), (X, 1 - mask, ("gasf",), 4)]:
        b = cached_images(*args)
        assert np.array_equal(b, to_images(*args)), args
    assert not np.array_equal(cached_images(X, 1 - mask, ("gasf",), 4), a)
