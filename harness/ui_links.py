"""Links into the MLflow UI that open on what a sweep is read by, in a fresh browser too.

The MLflow 3 UI keeps its GenAI / Model training toggle in the browser's localStorage
(`mlflow.workflowType`, default GenAI) and does not reconcile it with the experiment's
`mlflow.experimentKind` tag (mlflow#24498; unchanged in 3.17.2 and 3.18.0). So the links here
carry what the UI itself reads from the URL (its frontend source, 3.17.2):

- `?workflowType=machine_learning`, which the UI prefers over localStorage (the sidebar
  toggle navigates to exactly this), and the `/runs` route, so the GenAI overview is never shown;
- `?viewStateShareKey=<key>`, the UI's "Save & share view": the runs table's state (filter,
  sort, visible columns, grouping) is read from the experiment tag
  `mlflow.sharedViewState.<key>`. The URL alone can carry only the filter and sort
  (`searchFilter`, `orderByKey`, `orderByAsc`); visible columns and grouping live in
  localStorage, so a fresh browser would show no metric column without the shared view;
- `#/compare-runs?runs=[ids]&experiments=[ids]`, the compare page of a set of runs.

The URL builders are pure functions of the UI's base URL, ids and names; `experiment_links`
and the functions above it read the store through `MlflowClient` and write the view's tag.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from harness.contract import TEST_ACCURACY, Role, Tag

WORKFLOW_TYPE = "machine_learning"  # the UI's "Model training" side of the toggle
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
FINAL_RUNS_VIEW = "harness-final-runs"  # the share key (and tag suffix) of the final-runs view
FINAL_RUNS_VIEW_NAME = "harness: final runs"  # what the UI's "Views" menu lists
FINAL_RUNS_FILTER = f"tags.`{Tag.ROLE}` = '{Role.FINAL}'"
# Params every final run varies besides the searched ones: the final stage's seeds and T values.
FINAL_STAGE_PARAMS = ("seed", "snn.time_steps")
# The runs table's fixed columns (ids as the UI names them) and the widths the view gives them.
FIXED_COLUMNS = {"attributes.`Run Name`": 210, "runDateAndNestInfo": 145, "duration": 70}


def column_key(kind: str, name: str) -> str:
    """The UI's id of a runs-table column: `metrics.`test_accuracy``, `params.`kd.alpha``."""
    return f"{kind}.`{name}`"


def final_runs_view_state(searched: Iterable[str]) -> dict[str, Any]:
    """The runs table showing only final runs, grouped by method (each group's row shows the
    mean), best `test_accuracy` first, with `test_accuracy`, the searched params and the final
    stage's seed and T as columns, in that order. The fields are the UI's search facets and
    `ExperimentPageUIState` (the UI leaves out expanded, pinned and hidden runs of a shared view)."""
    columns = [column_key("params", name) for name in dict.fromkeys([*searched, *FINAL_STAGE_PARAMS])]
    metric = column_key("metrics", TEST_ACCURACY)
    return {
        "searchFilter": FINAL_RUNS_FILTER,
        "orderByKey": metric,
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [metric, *columns],
        # The UI applies widths only to the columns `columnOrder` names (its default is 100 px,
        # which cuts most param names).
        "columnOrder": [*FIXED_COLUMNS, metric, *columns],
        "columnWidths": {**FIXED_COLUMNS, metric: 115, **{key: _header_width(key) for key in columns}},
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": Tag.METHOD.value}]},
        "groupsExpanded": {},
        "runsHiddenMode": "SHOW_ALL",  # charts show every final run, not the first 10
    }


def _header_width(key: str) -> int:
    """Pixels that show a column's header unclipped (the name inside the backticks)."""
    return max(70, round(7 * len(key.split("`")[1]) + 24))


def shared_view_tag(
    state: Mapping[str, Any], name: str = FINAL_RUNS_VIEW_NAME, created_at_ms: int | None = None
) -> str:
    """The value of tag `mlflow.sharedViewState.<key>`: the UI's saved-view envelope, with the
    state as plain JSON (the UI also reads uncompressed state)."""
    created = int(time.time() * 1000) if created_at_ms is None else created_at_ms
    return json.dumps({"name": name, "createdAt": created, "state": json.dumps(state)})


def shared_view_state(tag_value: str | None) -> dict[str, Any] | None:
    """The state inside a view tag written by `shared_view_tag`, or None (missing, or not ours)."""
    try:
        return json.loads(json.loads(tag_value or "")["state"])
    except (ValueError, KeyError, TypeError):
        return None


def _hash_route(base_url: str, route: str, params: Mapping[str, str]) -> str:
    return f"{base_url.rstrip('/')}/#{route}?{urlencode(params, quote_via=quote)}"


def runs_table_url(base_url: str, experiment_id: str, view: str | None = FINAL_RUNS_VIEW) -> str:
    """The experiment's runs table in the Model training view; with `view`, the saved view of that
    share key, else (no view tag could be written) the final runs by filter alone."""
    params = {"workflowType": WORKFLOW_TYPE}
    if view:
        params["viewStateShareKey"] = view
    else:
        metric = column_key("metrics", TEST_ACCURACY)
        params |= {"searchFilter": FINAL_RUNS_FILTER, "orderByKey": metric, "orderByAsc": "false"}
    return _hash_route(base_url, f"/experiments/{experiment_id}/runs", params)


def compare_runs_url(base_url: str, experiment_id: str, run_ids: Sequence[str]) -> str:
    """MLflow's compare page (parallel coordinates, scatter, params and metrics side by side) of `run_ids`."""
    compact = {"separators": (",", ":")}
    params = {
        "runs": json.dumps(list(run_ids), **compact),
        "experiments": json.dumps([experiment_id], **compact),
        "workflowType": WORKFLOW_TYPE,
    }
    return _hash_route(base_url, "/compare-runs", params)


def local_ui_url(host: str = "127.0.0.1", port: int = 5000) -> str:
    """The address of `harness ui --host HOST --port PORT` (this machine's for a wildcard host)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def ui_base_url(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> str:
    """Where the UI of `tracking_uri` answers: the tracking server itself, else `harness ui` on host:port."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return local_ui_url(host, port)


@dataclass
class ExperimentLinks:
    """The links of one experiment. `compare` maps each method to (its final runs' compare page,
    how many runs); `runs_table` is the final-runs view, or the plain runs table where the
    experiment has no finished final runs."""

    name: str
    experiment_id: str
    runs_table: str
    has_final_runs: bool
    view_written: bool
    compare: dict[str, tuple[str, int]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What `harness ui` and `harness sweep` print for the experiment."""
        if not self.has_final_runs:
            return [f"experiment {self.name!r}: no final runs yet; its runs: {self.runs_table}"]
        table = "final runs (test_accuracy, searched params)" if self.view_written else "final runs"
        lines = [f"experiment {self.name!r}:", f"  {table}: {self.runs_table}"]
        for method, (url, n) in self.compare.items():
            lines.append(f"  compare {method} ({n} final run{'s' if n != 1 else ''}): {url}")
        return lines


def experiment_links(client: Any, experiment: str, base_url: str, write_view: bool = True) -> ExperimentLinks | None:
    """The links of experiment `experiment` (a name) in the store of `client` (an `MlflowClient`).

    With `write_view`, stores the final-runs view as the experiment tag its link names (written
    again only when its state changed). Returns None for an unknown experiment.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    experiment_id = found.experiment_id
    finals = _search(client, experiment_id, f"{FINAL_RUNS_FILTER} and attributes.status = 'FINISHED'")
    if not finals:
        plain = _hash_route(base_url, f"/experiments/{experiment_id}/runs", {"workflowType": WORKFLOW_TYPE})
        return ExperimentLinks(experiment, experiment_id, plain, has_final_runs=False, view_written=False)
    by_method: dict[str, list[str]] = {}
    for run in sorted(finals, key=lambda run: run.info.run_name or ""):
        by_method.setdefault(run.data.tags.get(Tag.METHOD, "?"), []).append(run.info.run_id)
    methods = _method_order(client, experiment_id, by_method)
    searched = [dim for method in methods for dim in _searched(client, experiment_id, method)]
    view_written = write_view and _write_view(client, found, final_runs_view_state(searched))
    links = ExperimentLinks(
        experiment,
        experiment_id,
        runs_table_url(base_url, experiment_id, FINAL_RUNS_VIEW if view_written else None),
        has_final_runs=True,
        view_written=view_written,
    )
    for method in methods:
        links.compare[method] = (compare_runs_url(base_url, experiment_id, by_method[method]), len(by_method[method]))
    return links


def store_links(client: Any, base_url: str, write_view: bool = True) -> list[ExperimentLinks]:
    """`experiment_links` of every experiment in the store that holds runs of the harness."""
    result = []
    for experiment in client.search_experiments():
        if _search(client, experiment.experiment_id, f"tags.`{Tag.ROLE}` != ''", max_results=1):
            links = experiment_links(client, experiment.name, base_url, write_view)
            if links is not None:
                result.append(links)
    return result


def _search(client: Any, experiment_id: str, filter_string: str, max_results: int = 5000) -> list[Any]:
    return list(client.search_runs([experiment_id], filter_string, max_results=max_results))


def _method_order(client: Any, experiment_id: str, by_method: Mapping[str, list[str]]) -> list[str]:
    """The sweep's method order (its parent's `harness.methods`), then any other method by name."""
    parents = _search(client, experiment_id, f"tags.`{Tag.ROLE}` = '{Role.SWEEP}'", max_results=1)
    order = parents[0].data.tags.get(Tag.METHODS, "").split(",") if parents else []
    return [m for m in order if m in by_method] + sorted(m for m in by_method if m not in order)


def _searched(client: Any, experiment_id: str, method: str) -> list[str]:
    """The dims the sweep searched for `method`: its trial runs' tag `harness.searched`."""
    name = method.replace("'", "")
    trials = _search(
        client,
        experiment_id,
        f"tags.`{Tag.METHOD}` = '{name}' and tags.`{Tag.ROLE}` = '{Role.TRIAL}' and tags.`{Tag.SEARCHED}` != ''",
        max_results=1,
    )
    return [dim for dim in trials[0].data.tags[Tag.SEARCHED].split(",") if dim] if trials else []


def _write_view(client: Any, experiment: Any, state: dict[str, Any]) -> bool:
    """Stores `state` as the final-runs view of `experiment`; False where the store refuses
    (no permission, a locked database): the links then do without the view."""
    key = SHARED_VIEW_TAG_PREFIX + FINAL_RUNS_VIEW
    if shared_view_state(experiment.tags.get(key)) == state:
        return True
    try:
        client.set_experiment_tag(experiment.experiment_id, key, shared_view_tag(state))
    except Exception:
        return False
    return True


def ui_lines(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """What `harness ui` prints before it starts the server on host:port: every experiment's links
    (their views written to the store first). A store that cannot be read gets one line saying so."""
    base = local_ui_url(host, port)
    try:
        experiments = store_links(_client(tracking_uri), base)
    except Exception as exc:  # the links are a help: the UI starts anyway
        return [f"{base}  (no links: {_reason(exc)})"]
    if not experiments:
        return [f"{base}  (no harness runs in {tracking_uri} yet)"]
    head = "Open these in a browser (the Model training view; a new browser would start on MLflow's GenAI overview):"
    return [head, *(line for links in experiments for line in links.lines())]


def sweep_ui_lines(tracking_uri: str, experiment: str) -> list[str]:
    """What `harness sweep` ends with: how to open the UI and the links of its experiment."""
    base = ui_base_url(tracking_uri)
    if base == local_ui_url():
        head = f"Open the MLflow UI with: harness ui --tracking-uri {tracking_uri}, then:"
    else:
        head = f"MLflow UI: {base}"
    try:
        links = experiment_links(_client(tracking_uri), experiment, base)
    except Exception as exc:  # the sweep has ended well; the links are a help
        return [head, f"  (no links: {_reason(exc)})"]
    return [head, *(links.lines() if links is not None else [])]


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
