"""The PromQL name extraction the deploy checks rely on."""

from tests.deploy.tools import exported_names, metric_names


def test_metric_names_skip_functions_keywords_labels_and_durations() -> None:
    expr = ('sum by (job, reason) (rate(htap_poll_errors_total{reason=~"a|b{c}"}[5m] offset 10m))'
            ' * on (job, instance_id) group_left (project_id) htap_instance_info'
            ' > bool 2 and histogram_quantile(0.9, x_bucket[1h:1m]) or vector(0) unless absent(up)')
    assert metric_names(expr) == {"htap_poll_errors_total", "htap_instance_info", "x_bucket", "up"}
    assert metric_names("instance_id:htap_sessions:avg_over_time1h offset 10m") == \
        {"instance_id:htap_sessions:avg_over_time1h"}


def test_exported_names_are_sample_names() -> None:
    text = "# HELP a x\n# TYPE a histogram\na_bucket{le=\"1.0\"} 1\na_gcount 2\nb 3\n"
    assert exported_names(text) == {"a_bucket", "a_gcount", "b"}
