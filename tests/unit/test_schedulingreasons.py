"""The node-by-node refusal record: capped fairly, and read back only when it is well formed."""

from __future__ import annotations

import json

from kubelite.machinery import schedulingreasons as sr


def test_a_small_list_is_kept_whole_and_sorted_by_node() -> None:
    reasons = [("b", "NodeResourcesFit", "Insufficient cpu"), ("a", "TaintToleration", "node(s) had taint")]
    got = sr.decode(sr.encode(reasons))
    assert got == sr.NodeReasons(sorted(reasons), 0)


def test_the_cap_shows_every_kind_of_refusal_and_counts_the_rest() -> None:
    reasons = [(f"n{i:04d}", "NodeResourcesFit", "Insufficient cpu") for i in range(1000)]
    reasons += [("gpu-1", "TaintToleration", "untolerated taint"), ("cp", "NodeAffinity", "didn't match")]
    got = sr.decode(sr.encode(reasons, limit=10))
    assert got is not None
    assert len(got.entries) == 10 and got.omitted == 992
    plugins = {plugin for _, plugin, _ in got.entries}
    assert plugins == {"NodeResourcesFit", "TaintToleration", "NodeAffinity"}
    assert [n for n, _, _ in got.entries] == sorted(n for n, _, _ in got.entries)
    assert len(sr.encode(reasons)) < 4096  # the default cap keeps a 1,000-node refusal small


def test_a_hand_edited_record_is_ignored() -> None:
    assert sr.decode("not json") is None
    assert sr.decode(json.dumps({"nodes": [{"node": "a"}]})) is None
    assert sr.decode(json.dumps([1, 2])) is None
