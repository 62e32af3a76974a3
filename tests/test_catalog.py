import copy

import pytest
import yaml

from geosynth.catalog import load_catalog, parse_catalog
from geosynth.errors import CatalogError, UsageError


@pytest.fixture(scope="module")
def raw():
    from geosynth.catalog import default_catalog_path

    return yaml.safe_load(default_catalog_path().read_text())


def test_default_catalog_facts():
    cat = load_catalog()
    assert cat.grid.crs == "EPSG:25832"
    assert cat.grid.tile_size_m == 1000 and cat.grid.tile_pixels == 1000
    assert [c.id for c in cat.classes.classes] == list(range(1, 11))
    assert cat.classes.num_classes == 11
    assert cat.classes.burn_order[-1] == "buildings"
    assert len(cat.cities("train")) == 40
    assert sorted(r.name for r in cat.cities("test")) == ["duesseldorf", "herne", "neuss"]
    assert cat.region("Cologne").name == "koeln"
    assert cat.region("demo").generated
    assert cat.region("demo").split_of("358_5645") == "test"
    assert cat.region("demo").split_of("356_5645") == "train"
    assert cat.sar.min_valid_fraction == 0.7
    assert cat.atkis.by_attribute["AX_Landwirtschaft"].values["Gruenland"] == "grassland"
    koeln = cat.region("koeln")
    assert koeln.source_url(cat.sources["dop"]) == (
        "https://www.opengeodata.nrw.de/produkte/geobasis/lbi/dop/dop_jp2_f10_paketiert/"
        "dop_05315000_K%C3%B6ln_EPSG25832_JPEG2000.zip"
    )
    assert cat.sources["dop"].default_layout == "tiles"
    # NRW's server today (the public record in the catalog's `record`)
    dop = cat.sources["dop"].layout("tiles")
    assert dop.listing.endswith("/lusat/akt/dop/dop_jp2_f10/") and dop.listing_format == "auto"
    assert dop.history.endswith("/hist_dop_jp2_f10/hist_dop_{year}/")
    assert dop.subfolders == ("epsg_25832",)
    lidar = cat.sources["lidar"]
    assert lidar.layout().listing.endswith("/hm/3dm_l_las/3dm_l_las/")
    assert lidar.layout().member_pattern == "3dm_32_{e}_{n}_1_nw[_{year}].laz"
    assert lidar.drop_classes == (7, 18, 24)
    assert {"veg01_f", "veg02_f", "sie02_f", "gew01_f"} <= set(cat.sources["landcover"].layers)
    assert "3cb6bdf2a615b9e526c7dcff85fd1f20728081b7" in cat.published["geonrw"].url
    assert len(cat.tsx_scenes) == 49


def test_unknown_region_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown region 'atlantis'"):
        load_catalog().region("atlantis")


def _set(data, path, value):
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[keys[-1]]
    elif isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("regions.koeln.split", "tran", r"regions\.koeln\.split: expected one of train, test"),
        ("regions.koeln.ags", "5315", r"regions\.koeln\.ags: expected an 8-digit"),
        ("grid.crs", "25832", r"grid\.crs: expected 'EPSG:<code>'"),
        ("grid.pixel_size_m", -1, r"grid\.pixel_size_m: expected a positive number"),
        ("classes.items.3.color", "grey", r"classes\.items\[3\]\.color: expected a colour"),
        ("classes.burn_order", ["forest"], r"classes\.burn_order: must list every class"),
        ("atkis.types.AX_Wald", "jungle", r"atkis\.types\.AX_Wald: expected one of forest"),
        (
            "osm.highways.widths_m.primary",
            0,
            r"osm\.highways\.widths_m\.primary: expected a positive",
        ),
        (
            "normalisation.geonrw_sar.min_valid_fraction",
            1.5,
            r"min_valid_fraction: expected a fraction",
        ),
        ("normalisation.dfc2020.s1_db_clip", [5, -20], r"s1_db_clip: expected \[low, high\]"),
        ("version", KeyError, r"version: missing"),
        ("regions.demo.tiles", [3], r"regions\.demo\.tiles: expected 2 items"),
    ],
)
def test_malformed_catalog_names_the_key_path(raw, path, value, message):
    data = copy.deepcopy(raw)
    _set(data, path, value)
    with pytest.raises(CatalogError, match=message):
        parse_catalog(data, file="bad.yaml")


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1,\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)


def test_catalog_hash_changes_with_content(raw):
    a = parse_catalog(raw)
    data = copy.deepcopy(raw)
    data["osm"]["highways"]["widths_m"]["primary"] = 11.0
    assert parse_catalog(data).sha256 != a.sha256


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("colgne", "did you mean 'koeln', alias 'cologne'?"),
        ("koln", "did you mean 'koeln'?"),
    ],
)
def test_misspelled_regions_get_a_suggestion_and_the_aliases_are_listed(name, hint):
    with pytest.raises(UsageError) as info:
        load_catalog().region(name)
    assert hint in str(info.value)
    assert "koeln (cologne)" in str(info.value)
    assert load_catalog().region("Cologne").name == "koeln"


def test_misspelled_classes_get_a_suggestion():
    classes = load_catalog().classes
    with pytest.raises(UsageError, match=r"did you mean 'buildings'\?"):
        classes.lookup("buildngs")
    with pytest.raises(UsageError, match=r"did you mean 'water'\?"):
        classes.by_key("watr")
    with pytest.raises(UsageError) as info:
        classes.lookup("zzzz")
    assert "did you mean" not in str(info.value)
