"""NRW provider file names and TerraSAR-X product names: format, parse, reject."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geosynth.catalog import load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import TileId
from geosynth.sources.filenames import (
    member_name,
    package_name,
    parse_member,
    parse_nrw_name,
    parse_tsx_name,
    pattern_regex,
    tsx_product_name,
)


def test_real_nrw_names_parse():
    assert parse_nrw_name("dop10rgbi_32_356_5645_1_nw_2022.jp2") == {
        "source": "dop",
        "tile_id": "356_5645",
        "e_km": 356,
        "n_km": 5645,
        "year": 2022,
        "name": "dop10rgbi_32_356_5645_1_nw_2022.jp2",
    }
    lidar = parse_nrw_name("some/folder/3dm_32_280_5659_1_nw.laz")
    assert (lidar["source"], lidar["tile_id"], lidar["year"]) == ("lidar", "280_5659", None)
    assert parse_member("3dm_32_280_5659_1_nw.las", "lidar").tile_id == "280_5659"


@pytest.mark.parametrize(
    "name",
    [
        "dop10rgbi_32_356_5645_1_nw_22.jp2",
        "356_5645_rgb.jp2",
        "3dm_32_x_5645_1_nw.laz",
        "readme.txt",
    ],
)
def test_other_names_are_rejected_naming_the_file(name):
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        parse_nrw_name(name)


@given(st.integers(280, 540), st.integers(5560, 5820), st.integers(2010, 2030))
def test_member_names_round_trip(e, n, year):
    tile = TileId(e, n)
    dop = parse_member(member_name("dop", tile, year), "dop")
    assert (dop.tile, dop.year) == (tile, year)
    assert parse_member(member_name("lidar", tile), "lidar").tile == tile
    assert parse_member(member_name("lidar", tile), "dop") is None


def test_the_year_is_optional_as_in_names_before_the_per_tile_layout():
    assert member_name("dop", "356_5645") == "dop10rgbi_32_356_5645_1_nw.jp2"
    assert member_name("dop", "356_5645", 2024) == "dop10rgbi_32_356_5645_1_nw_2024.jp2"
    assert member_name("lidar", "356_5645", 2021) == "3dm_32_356_5645_1_nw_2021.laz"
    assert parse_member("dop10rgbi_32_356_5645_1_nw.jp2", "dop").year is None


def test_package_names_come_from_the_catalog_urls():
    catalog = load_catalog()
    demo = catalog.region("demo")
    assert package_name("dop", demo) == "dop_05999000_Demostadt_EPSG25832_JPEG2000.zip"
    assert package_name("lidar", demo) == "3dm_l_las_05999000_Demostadt_EPSG25832.zip"
    # the names as the authors' download list spells them, umlauts and all
    assert package_name("dop", catalog.region("cologne")).startswith("dop_05315000_Köln_")
    assert package_name("lidar", catalog.region("muelheim")) == (
        "3dm_l_las_05117000_Mülheim_an_der_Ruhr_EPSG25832.zip"
    )


def test_pattern_regex_escapes_the_literal_parts():
    regex = pattern_regex("a.b_{e}_{n}.laz")
    assert regex.match("a.b_356_5645.laz") and not regex.match("axb_356_5645.laz")
    assert not regex.match("a.b_35_5645.laz")  # a km easting in UTM 32N has 3 or 4 digits


def test_tsx_product_names():
    name = tsx_product_name("20200412T172103", "20200412T172104")
    assert name == "TSX1_SAR__EEC_SE___SL_S_SRA_20200412T172103_20200412T172104"
    assert parse_tsx_name(f"/data/{name}") == {
        "mission": "TSX1",
        "product": "EEC",
        "variant": "SE___SL_S_SRA",
        "start": "20200412T172103",
        "stop": "20200412T172104",
    }
    assert parse_tsx_name("S1A_IW_GRDH_1SDV_20200412T172103") is None
    with pytest.raises(UsageError):
        tsx_product_name("2020-04-12", "2020-04-12")
