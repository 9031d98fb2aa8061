"""The reconciliation used by the end-to-end tests compares by meaning and catches each kind of loss."""

from tests.e2e.reconcile import compare_object, same


def test_same_by_meaning() -> None:
    assert same(1, 1.0) and same("1.50", 1.5)
    assert same("2026-01-02T03:04:05.000+0000", "2026-01-02T03:04:05Z")
    assert same(None, "") and same(True, "true")
    assert same({"city": "Paris", "attributes": {}}, {"city": "Paris"})
    assert not same("a", "b") and not same(1, 2) and not same("2026-01-02", "2026-01-03")
    assert not same({"city": "Paris"}, {"city": "Rome"})


def test_compare_object_finds_missing_stale_and_phantom() -> None:
    org = {"a": {"Id": "a", "Name": "x"}, "b": {"Id": "b", "Name": "y"}, "c": {"Id": "c", "Name": "z"}}
    backup = {"a": {"Id": "a", "Name": "x"}, "b": {"Id": "b", "Name": "old"}, "d": {"Id": "d", "Name": "gone"}}
    report = compare_object(org, backup)
    assert report.missing == ["c"] and report.stale == ["b"] and report.phantom == ["d"]
    assert report.stale_fields == {"b": ["Name"]}
    assert compare_object(org, org).clean
