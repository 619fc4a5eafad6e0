"""deploy/k8s/base/generated/dashboards.yaml is what `python -m dashboards` makes: one ConfigMap per dashboard for
Grafana's sidecar, holding exactly the JSON of dashboards/json/."""

from __future__ import annotations

from pathlib import Path

import yaml

from dashboards.build import CONFIGMAPS_FILE, JSON_DIR, build, check, configmaps, write
from tests.support.services import ROOT


def test_the_configmaps_file_is_what_the_build_makes() -> None:
    assert CONFIGMAPS_FILE == ROOT / "deploy" / "k8s" / "base" / "generated" / "dashboards.yaml"
    assert CONFIGMAPS_FILE.read_text(encoding="utf-8") == configmaps(), "run `python -m dashboards` and commit"


def test_each_dashboard_is_one_labelled_configmap_with_its_json() -> None:
    documents = list(yaml.safe_load_all(CONFIGMAPS_FILE.read_text(encoding="utf-8")))
    found = {}
    for document in documents:
        assert (document["apiVersion"], document["kind"]) == ("v1", "ConfigMap")
        assert document["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = document["data"].items()
        found[key] = text
    assert found == {path.name: path.read_text(encoding="utf-8") for path in JSON_DIR.glob("*.json")}
    assert len({document["metadata"]["name"] for document in documents}) == len(build())


def test_check_reports_a_stale_configmaps_file(tmp_path: Path) -> None:
    directory, configmaps_file = tmp_path / "json", tmp_path / "dashboards.yaml"
    write(directory, configmaps_file)
    assert check(directory, configmaps_file) == []
    configmaps_file.write_text(configmaps_file.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert check(directory, configmaps_file) == [str(configmaps_file)]
    configmaps_file.unlink()
    assert check(directory, configmaps_file) == [str(configmaps_file)]
