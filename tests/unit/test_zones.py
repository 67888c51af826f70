"""zones.py and the zone config: polygons, anchors, exclusion, drawing."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from PIL import Image

from edgepose.config import ZoneConfig, load_config
from edgepose.errors import ConfigError
from edgepose.overlay import ZONE_COLOURS, ZoneAnnotator, render_overlay
from edgepose.zones import Zone, ZoneFilter, anchors, points_in_polygon, zone_membership

from .synthetic import CANONICAL, fallen, person, poses_of

W, H = 640, 480
SQUARE = np.array([[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]])


def zone(name="z", kind="occupancy", polygon=SQUARE, lying_ok=False, anchor="feet") -> Zone:
    return Zone(name, kind, lying_ok, anchor, np.asarray(polygon, float))


def test_points_in_a_square_and_a_concave_polygon():
    inside = points_in_polygon(np.array([[0.3, 0.3], [0.7, 0.3], [0.1, 0.1], [0.59, 0.59]]), SQUARE)
    assert inside.tolist() == [True, False, False, True]
    # An L shape: the notch at the top right is outside.
    ell = np.array([[0, 0], [0.5, 0], [0.5, 0.5], [1, 0.5], [1, 1], [0, 1]], float)
    assert points_in_polygon(np.array([[0.75, 0.25], [0.25, 0.25], [0.75, 0.75]]), ell).tolist() == [
        False, True, True,
    ]


def test_a_point_on_a_shared_edge_is_in_exactly_one_of_two_touching_zones():
    left = np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1]], float)
    right = np.array([[0.5, 0], [1, 0], [1, 1], [0.5, 1]], float)
    edge = np.array([[0.5, 0.3], [0.5, 0.7]])
    assert (points_in_polygon(edge, left) ^ points_in_polygon(edge, right)).all()


def test_feet_anchor_is_the_bottom_centre_and_centre_anchor_the_hips():
    poses = poses_of(person(CANONICAL.xy, 200, (320, 400)))
    feet = anchors(poses, W, H, "feet", 0.3)[0]
    assert feet == pytest.approx([320 / W, 400 / H], abs=1e-3)
    centre = anchors(poses, W, H, "centre", 0.3)[0]
    assert centre == pytest.approx([320 / W, (400 - 0.52 * 200) / H], abs=1e-3)


def test_centre_anchor_falls_back_to_the_box_without_hips():
    xy, scores = person(CANONICAL.xy, 200, (320, 400))
    scores[[11, 12]] = 0.0
    c = anchors(poses_of((xy, scores)), W, H, "centre", 0.3)[0]
    box_mid_y = (xy[scores >= 0.3, 1].min() + xy[scores >= 0.3, 1].max()) / 2
    assert c == pytest.approx([320 / W, box_mid_y / H], abs=1e-3)


def test_membership_uses_each_zones_own_anchor():
    # A person lying on a bed seen from its foot end: the hips (y 300) are on it, the
    # bottom of their box (a hand hanging down, y 330) is past its edge (y 317).
    lying = poses_of(person(fallen(CANONICAL.xy, 90), 200, (200, 300)))
    bed = np.array([[0.3, 0.5], [1.0, 0.5], [1.0, 0.66], [0.3, 0.66]])
    member = zone_membership(lying, [zone("a", polygon=bed, anchor="centre"), zone("b", polygon=bed)], W, H, 0.3)
    assert member.tolist() == [[True, False]]


def test_exclusion_zone_removes_people_anchored_in_it_and_keeps_the_rest():
    tv = zone("tv", "exclusion", np.array([[0.0, 0.0], [0.3, 0.0], [0.3, 0.9], [0.0, 0.9]]))
    poses = poses_of(person(CANONICAL.xy, 100, (100, 400)), person(CANONICAL.xy, 200, (400, 400)))
    poses = poses.replace(track_ids=np.array([7, 8]))
    out = ZoneFilter([tv, zone("room")], 0.3).process(poses, W, H)
    assert len(out) == 1 and out.track_ids.tolist() == [8]
    assert ZoneFilter([zone("room")], 0.3).process(poses, W, H) is poses  # no exclusion zones: untouched


def test_zone_config_is_parsed_and_checked(tmp_path):
    path = tmp_path / "z.toml"
    path.write_text(
        '[[zones]]\nname = "bed"\nlying_ok = true\nanchor = "centre"\n'
        "points = [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0, 0.9]]\n"
        '[[zones]]\nname = "tv"\nkind = "exclusion"\npoints = [[0.7, 0.1], [0.9, 0.1], [0.9, 0.4]]\n'
    )
    config = load_config(path)
    bed, tv = config.zones
    assert (bed.name, bed.kind, bed.lying_ok, bed.anchor) == ("bed", "occupancy", True, "centre")
    assert bed.points[3] == (0.0, 0.9)
    assert Zone.from_config(tv).polygon.shape == (3, 2)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('name = "a"\npoints = [[0.1, 0.1], [0.2, 0.2]]', "zones[0].points: expected 3-64 points"),
        ('name = "a"\npoints = [[0.1, 0.1], [0.2, 0.2], [1.5, 0.2]]', "zones[0].points: point 2: x and y are fractions"),
        ('name = "a"\npoints = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]', "zones[0].points: the points enclose no area"),
        ('name = "a"\npoints = [[0.1, 0.1], [0.2], [0.3, 0.3]]', "zones[0].points: point 1: expected [x, y]"),
        ('name = "a b"\npoints = [[0, 0], [1, 0], [1, 1]]', "zones[0].name: must be 1-64 letters, digits"),
        ('points = [[0, 0], [1, 0], [1, 1]]', "zones[0].name: every zone needs a name"),
        ('name = "a"', "zones[0].points: every zone needs points"),
        ('name = "a"\nkind = "exlusion"\npoints = [[0, 0], [1, 0], [1, 1]]', 'did you mean "exclusion"'),
        ('name = "a"\npoint = [[0, 0], [1, 0], [1, 1]]', "zones[0].point: unknown key; did you mean zones[0].points?"),
    ],
)
def test_bad_zones_name_the_key_path(tmp_path, body, expected):
    path = tmp_path / "z.toml"
    path.write_text("[[zones]]\n" + body + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_duplicate_zone_names_are_refused(tmp_path):
    path = tmp_path / "z.toml"
    zone_text = '[[zones]]\nname = "a"\npoints = [[0, 0], [1, 0], [1, 1]]\n'
    path.write_text(zone_text * 2)
    with pytest.raises(ConfigError, match=r'zones\[1\].name: "a" is already the name of zones\[0\]'):
        load_config(path)


def test_zones_must_be_an_array_of_tables(tmp_path):
    path = tmp_path / "z.toml"
    path.write_text("zones = 3\n")
    with pytest.raises(ConfigError, match=r"zones: expected tables \[\[zones\]\]"):
        load_config(path)


def test_documented_zone_examples_are_valid(repo_root, tmp_path):
    # The shipped config shows [[zones]] as comments; uncommented they must load.
    lines = (repo_root / "config" / "edgepose.toml").read_text().splitlines()
    start = lines.index("# [[zones]]")
    end = lines.index("[logging]")
    example = "\n".join(line[2:] for line in lines[start:end] if line.startswith("# "))
    tomllib.loads(example)
    path = tmp_path / "z.toml"
    path.write_text(example)
    names = [z.name for z in load_config(path).zones]
    assert names == ["bed", "tv"]


def test_zone_annotator_tints_inside_outlines_and_leaves_the_input_alone():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    out = ZoneAnnotator([zone("bed", polygon=SQUARE, lying_ok=True)], labels=False).annotate(image)
    assert image.getpixel((80, 40)) == (255, 255, 255)  # the caller's image is untouched
    inside = np.asarray(out)[40, 80].astype(int)
    green = np.array(ZONE_COLOURS["lying_ok"])
    assert (inside < 255).any() and np.argmax(255 - inside) != np.argmax(green)  # tinted towards green
    assert tuple(np.asarray(out)[5, 5]) == (255, 255, 255)  # outside stays as it was
    edge = np.asarray(out)[20, 80]  # on the top edge (y = 0.2 * 100)
    assert tuple(edge) == tuple(green)


def test_render_overlay_draws_zones_below_the_skeleton():
    rgb = np.full((H, W, 3), 255, np.uint8)
    poses = poses_of(person(CANONICAL.xy, 200, (320, 400)))
    plain = np.asarray(render_overlay(rgb, poses, labels=False))
    zoned = np.asarray(render_overlay(rgb, poses, labels=False, zones=[zone("room", polygon=SQUARE)]))
    assert (plain != zoned).any()
    assert ZoneConfig().kind == "occupancy"
