"""Jobs and executor resources: the config file, its checks, and the graph's order."""

import pytest

from icl_bench.core.errors import UsageError
from icl_bench.core.jobs import Job, Resources, check_graph, read_resources


def test_resources_from_file_then_options(tmp_path):
    config = tmp_path / "cluster.toml"
    config.write_text('partition = "gpu"\ngpus_per_node = 4\ntime_min = 600\n[extra]\nconstraint = "a100"\n')
    found = read_resources(config, time_min=30, nodes=None)
    assert (found.partition, found.gpus_per_node, found.time_min, found.nodes) == ("gpu", 4, 30, 1)
    assert dict(found.extra) == {"constraint": "a100"}
    assert read_resources(None) == Resources()
    assert Resources(nodes=2, tasks_per_node=4, gpus_per_node=4).single() == Resources(gpus_per_node=4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("partiton = 'gpu'", "unknown field 'partiton'; known fields: partition"),
        ("nodes = 0", r"nodes \(--nodes\) must be an integer >= 1"),
        ("gpus_per_node = -1", r"gpus_per_node \(--gpus-per-node\) must be an integer >= 0"),
        ("gpus_per_node = 'two'", "gpus_per_node"),
        ("account = true", "account must be a string"),
        ("mem_gb = -1", r"mem_gb \(--mem-gb\) must be a positive number"),
        ("extra = 3", r"\[extra\] must be a table"),
        ("partition = ", "executor config .*cluster.toml"),
    ],
)
def test_bad_config_is_one_line(tmp_path, text, message):
    config = tmp_path / "cluster.toml"
    config.write_text(text)
    with pytest.raises(UsageError, match=message) as error:
        read_resources(config)
    assert "\n" not in str(error.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match=r"executor config .*absent\.toml"):
        read_resources(tmp_path / "absent.toml")


def test_graph_order_and_names():
    a, b = Job("a", print), Job("b", print, after=("a",))
    check_graph([a, b])
    with pytest.raises(UsageError, match="'b' needs 'a', which does not come before it"):
        check_graph([b, a])
    with pytest.raises(UsageError, match="two jobs are named 'a'"):
        check_graph([a, a])
