"""`make test` runs tests/unit, tests/lab and tests/integration in one pytest session, where each test file is
imported by its base name (the folders are not packages): two files of one name stop the whole session at collection
("import file mismatch"). Every test file's base name is unique across them."""
import collections

from tests.lab.paths import REPO


def test_no_two_test_files_share_a_name():
    names = collections.defaultdict(list)
    for part in ("tests/unit", "tests/lab", "tests/integration"):
        for path in sorted((REPO / part).rglob("test_*.py")):
            names[path.name].append(str(path.relative_to(REPO)))
    assert [paths for paths in names.values() if len(paths) > 1] == []
