"""The property tests' own helpers (support/transforms.py): similarities keep angles, rotations and mirrors do what they say."""

import numpy as np
from hypothesis import given
from support.transforms import PROPERTY_SETTINGS, mirror_left_right, rotation_matrix, similarities


@PROPERTY_SETTINGS
@given(similarities())
def test_similarity_keeps_angles_and_scales_distances(t):
    a, b, c = np.array([0.0, 0, 0]), np.array([3.0, 0, 0]), np.array([0.0, 4, 0])
    ta, tb, tc = t(a), t(b), t(c)
    assert np.isclose(np.linalg.norm(tb - tc), 5.0 * t.scale)  # a 3-4-5 triangle stays one
    assert np.isclose((tb - ta) @ (tc - ta), 0.0, atol=1e-9)
    assert np.isclose(np.linalg.det(t.rotation), 1.0)


def test_rotation_matrix_turns_x_to_y_about_z():
    assert np.allclose(rotation_matrix((0, 0, 1), 90) @ [1, 0, 0], [0, 1, 0])


def test_mirror_flips_only_x():
    assert mirror_left_right((1.0, 2.0, 3.0)).tolist() == [-1.0, 2.0, 3.0]
