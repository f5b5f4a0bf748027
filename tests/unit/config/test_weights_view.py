"""The console and table views of the mixture: every dataset named up to 8, top movers and a grouped rest beyond."""

from mos_nemo.weights_view import counts_summary, top_movers, weights_summary, weights_table_many


def test_few_datasets_are_all_named():
    assert weights_summary({"a": 0.25, "b": 0.75}) == "a=0.2500 b=0.7500"
    assert counts_summary({"a": 3, "b": 0}) == "a:3,b:0"


def test_many_datasets_name_the_top_movers_and_group_the_rest():
    start = {f"d{i:02d}": 1 / 64 for i in range(64)}
    now = dict(start, d07=start["d07"] + 0.05, d03=start["d03"] - 0.005, d40=start["d40"] - 0.01)
    assert top_movers(now, start, 3) == ["d07", "d40", "d03"]
    line = weights_summary(now, start)
    assert line.startswith("d07=0.0656(+0.0500) d40=0.0056(-0.0100) d03=0.0106(-0.0050) d00=0.0156(+0.0000)")
    assert "| 59 others: mean 0.0156 [0.0156, 0.0156]" in line and len(line) < 200
    assert counts_summary({**{n: 0 for n in start}, "d07": 5, "d01": 2, "d02": 1}) == "3 datasets (most d07:5,d01:2,d02:1)"
    table = weights_table_many([{"step": 0, "weights": start, "counts": {}},
                                {"step": 9, "weights": now, "counts": {"d07": 4}}]).splitlines()
    assert len(table) == 2 + 64 and table[2].split() == ["d07", "0.0156", "0.0656", "+0.0500", "4"]
