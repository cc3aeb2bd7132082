"""The Label Studio round trip: flagged samples out as tasks, annotations back as review decisions.

The first part checks the tasks and the import on Label Studio's own export format, without a
server. The tests marked ``labelstudio`` start the real Label Studio server (see
``tests/labelstudio_server.py``) once for the module, export ten flagged samples to it with the
CLI, annotate three as a person would through the SDK, and import them back; where the server
cannot start they are skipped with the reason (in CI, where ``make test`` installs it, they fail).
"""
from __future__ import annotations

import base64
import io
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from ogdash.cli.main import main
from ogdash.core.errors import OgdashError
from ogdash.data import load_file, make_dataset
from ogdash.labelstudio import (
    GIVEN_VERSION,
    decisions_from_tasks,
    import_decisions,
    label_config,
    make_tasks,
    read_export,
    unsure_ids,
)
from ogdash.review import DecisionStore

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
N = 60


def digits_dataset(kind="image"):
    d = load_digits()
    X = d.images[:N, None] / 16.0 if kind == "image" else d.data[:N] / 16.0
    names = [f"pixel_{k}" for k in range(64)] if kind == "features" else None
    return make_dataset("digits", X, d.target[:N], NAMES, ids=1000 + np.arange(N),
                        sources=[f"row {i}" for i in range(N)], feature_names=names)


def annotate(task, choice, *, annotation_id, user=1, updated="2026-01-02T10:00:00.123456Z", cancelled=False):
    """The task as Label Studio's JSON export shows it after one annotation."""
    result = [] if choice is None else [{"from_name": "label", "to_name": "sample", "type": "choices",
                                         "value": {"choices": [choice]}}]
    task = json.loads(json.dumps(task))
    task.setdefault("id", 100 + annotation_id)
    task["project"] = 7
    task.setdefault("annotations", []).append(
        {"id": annotation_id, "completed_by": user, "result": result, "was_cancelled": cancelled,
         "created_at": updated, "updated_at": updated})
    return task


# ------------------------------------------------------------------ out

def test_an_image_task_carries_the_sample_its_given_label_the_suggestion_and_the_id():
    ds = digits_dataset()
    ids = ds.ids[[3, 5]]
    tasks = make_tasks(ds, ids, suggested=[8, 1], scores=[0.9, 0.5], method="heldout_margin")
    t = tasks[0]
    assert t["data"]["ogdash_id"] == 1003 and t["data"]["ogdash_source"] == "row 3"
    assert (t["data"]["given"], t["data"]["suggested"], t["data"]["score"]) == (NAMES[ds.y[3]], "eight", 0.9)
    png = Image.open(io.BytesIO(base64.b64decode(t["data"]["image"].split(",", 1)[1])))
    assert png.size == (128, 128)  # 8x8 enlarged for the annotator
    np.testing.assert_array_equal(np.asarray(png)[::16, ::16], ds.view(3))
    given, suggestion = t["predictions"]
    assert given == {"model_version": GIVEN_VERSION, "result": [{"from_name": "label", "to_name": "sample",
                                                                   "type": "choices",
                                                                   "value": {"choices": [NAMES[ds.y[3]]]}}]}
    assert suggestion["model_version"] == "ogdash heldout_margin" and suggestion["score"] == 0.9
    assert suggestion["result"][0]["value"]["choices"] == ["eight"]
    assert t["meta"] == {"ogdash_dataset": ds.fingerprint(), "ogdash_classes": NAMES, "ogdash_given": int(ds.y[3])}


def test_a_score_outside_0_1_stays_in_the_data_not_in_the_prediction():
    ds = digits_dataset()
    t = make_tasks(ds, ds.ids[:1], suggested=[2], scores=[7.5])[0]
    assert t["data"]["score"] == 7.5 and "score" not in t["predictions"][1]
    assert t["predictions"][1]["model_version"] == "ogdash"


def test_feature_rows_are_text_and_class_names_are_escaped_in_the_config():
    ds = digits_dataset("features")
    odd = make_dataset("odd", ds.X, ds.y % 2, ['say "yes"', "<no> & more"], ids=ds.ids)
    text = make_tasks(ds, ds.ids[:1])[0]["data"]["features"]
    assert text.splitlines()[:2] == [f"pixel_0: {ds.X[0, 0]:.6g}", f"pixel_1: {ds.X[0, 1]:.6g}"]
    view = ET.fromstring(label_config(odd))
    assert [c.get("value") for c in view.iter("Choice")] == ['say "yes"', "<no> & more"]
    assert view.find("Text").get("value") == "$features" and view.find("Choices").get("name") == "label"
    assert ET.fromstring(label_config(digits_dataset())).find("Image").get("value") == "$image"


def test_nothing_to_export_and_a_bad_suggestion_are_errors():
    ds = digits_dataset()
    with pytest.raises(OgdashError, match="no samples to export"):
        make_tasks(ds, [])
    with pytest.raises(OgdashError, match="not a class index"):
        make_tasks(ds, ds.ids[:1], suggested=[10])
    with pytest.raises(OgdashError, match="unknown sample ids"):
        make_tasks(ds, [5])


# ------------------------------------------------------------------ back

def test_annotations_become_keep_or_relabel_by_their_annotator_once(tmp_path):
    ds = digits_dataset()
    t = make_tasks(ds, ds.ids[:4], suggested=[1, 1, 1, 1], scores=[1, 1, 1, 1])
    given = [NAMES[c] for c in ds.y[:4]]
    other = "nine" if given[0] != "nine" else "eight"
    tasks = [annotate(t[0], other, annotation_id=1), annotate(t[1], given[1], annotation_id=2, user=2),
             annotate(t[2], None, annotation_id=3, cancelled=True), annotate(t[3], None, annotation_id=4)]
    store = DecisionStore(tmp_path / "d.sqlite")
    users = {1: "ann@example.com", 2: "bob"}
    first = import_decisions(store, tasks, users)
    assert (first.added, first.annotations, first.kept, first.relabelled, first.skipped) == (2, 2, 1, 1, 2)
    cur = store.current(ds.fingerprint())
    assert cur[["sample_id", "decision", "reviewer"]].values.tolist() == [[1000, "relabel", "ann@example.com"],
                                                                         [1001, "keep", "bob"]]
    assert cur["new_label"].tolist()[0] == NAMES.index(other) and cur["note"][0] == "Label Studio project 7, task 101, annotation 1"
    assert cur["timestamp"][0] == "2026-01-02T10:00:00.123456+00:00"

    history = store.history(ds.fingerprint())
    assert import_decisions(store, tasks, users).added == 0  # the same annotations again: nothing new
    assert import_decisions(store, tasks, {}).added == 0  # named by id this time (a file export): still the same
    pd.testing.assert_frame_equal(store.history(ds.fingerprint()), history)

    edited = [annotate({k: v for k, v in t[0].items()}, given[0], annotation_id=1, updated="2026-01-03T09:00:00Z")]
    assert import_decisions(store, edited, users).added == 1  # changed in Label Studio since: a newer decision
    assert store.current(ds.fingerprint()).set_index("sample_id").loc[1000, "decision"] == "keep"


def test_tasks_not_made_by_ogdash_or_with_an_unknown_class_are_refused(tmp_path):
    ds = digits_dataset()
    with pytest.raises(OgdashError, match="task 5: was not exported by ogdash"):
        decisions_from_tasks([{"id": 5, "data": {"image": "x"}, "annotations": []}])
    task = annotate(make_tasks(ds, ds.ids[:1])[0], "eleven", annotation_id=1)
    with pytest.raises(OgdashError, match=r"chose \['eleven'\], not one class"):
        decisions_from_tasks([task])
    (tmp_path / "min.json").write_text('{"label": "one"}')
    with pytest.raises(OgdashError, match="is not a list of tasks"):
        read_export(tmp_path / "min.json")


def test_unsure_ids_are_the_latest_decisions_that_are_unsure(tmp_path):
    store = DecisionStore(tmp_path / "d.sqlite")
    store.record("fp", 1, "unsure", "ann")
    store.record("fp", 1, "keep", "ann")
    store.record("fp", 2, "unsure", "bob")
    store.record("fp", 3, "unsure", "ann")
    store.record("fp", 3, "remove", "bob")
    assert unsure_ids(store, "fp").tolist() == [2]
    assert unsure_ids(store, "fp", "ann").tolist() == [3]
    assert unsure_ids(store, "other").tolist() == []


# ------------------------------------------------------------------ the CLI, without a server

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Train/test Parquet files of digits images (ids 1000..) and a scores CSV, as scan --out writes it, with 10 flagged."""
    root = tmp_path_factory.mktemp("ls_files")
    d = load_digits()

    def write(path, rows):
        pd.DataFrame({"id": 1000 + rows, **{f"pixel_{k}": d.data[rows, k] for k in range(64)},
                      "label": d.target[rows]}).to_parquet(path)

    write(root / "train.parquet", np.arange(N))
    write(root / "test.parquet", np.arange(N, N + 30))
    train = load_file(root / "train.parquet")
    flagged = np.zeros(N, dtype=int)
    flagged[np.arange(0, 50, 5)] = 1
    pd.DataFrame({"id": train.ids, "source": train.source_list(), "given_label": train.y,
                  "predicted_label": (train.y + 1) % 10, "score": np.linspace(0, 1, N), "flagged": flagged}
                 ).to_csv(root / "scores.csv", index=False)
    return root


def cli(*argv):
    return main(["labelstudio", *map(str, argv)])


def test_export_writes_an_import_file_and_its_config(files, tmp_path, capsys):
    code = cli("export", "--train", files / "train.parquet", "--test", files / "test.parquet", "--scores",
               files / "scores.csv", "--method", "heldout_margin", "--out", tmp_path / "tasks.json", "--json")
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tasks"] == 10 and out["ids"] == [1000 + i for i in range(0, 50, 5)]
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert [t["data"]["ogdash_id"] for t in tasks] == out["ids"]
    assert tasks[1]["data"]["ogdash_source"] == "row 5" and tasks[1]["predictions"][1]["score"] == round(5 / (N - 1), 6)
    assert ET.fromstring((tmp_path / "tasks.label_config.xml").read_text()).find("Text") is not None


def test_export_of_the_unsure_samples(files, tmp_path, capsys):
    train = load_file(files / "train.parquet")
    store = DecisionStore(tmp_path / "d.sqlite")
    store.record(train.fingerprint(), 1007, "unsure", "ann")
    store.record(train.fingerprint(), 1003, "unsure", "bob")
    code = cli("export", "--train", files / "train.parquet", "--test", files / "test.parquet", "--unsure",
               "--reviewer", "ann", "--decisions", tmp_path / "d.sqlite", "--out", tmp_path / "t.json", "--json")
    assert code == 0 and json.loads(capsys.readouterr().out)["ids"] == [1007]
    assert "suggested" not in json.loads((tmp_path / "t.json").read_text())[0]["data"]  # no scores given


@pytest.mark.parametrize("argv,message", [
    (["export", "--train", "{f}/train.parquet", "--scores", "{f}/scores.csv"], "say where the tasks go"),
    (["export", "--train", "{f}/train.parquet", "--out", "{t}/x.json"], "say which samples"),
    (["export", "--train", "{f}/test.parquet", "--test", "{f}/train.parquet", "--scores", "{f}/scores.csv", "--out",
      "{t}/x.json"], "its ids are not the training set's"),
    (["export", "--train", "{f}/train.parquet", "--test", "{f}/test.parquet", "--scores", "{f}/scores.csv",
      "--url", "http://127.0.0.1:9", "--token", "x"], r"cannot reach Label Studio at http://127.0.0.1:9"),
    (["export", "--train", "{f}/train.parquet", "--test", "{f}/test.parquet", "--scores", "{f}/scores.csv",
      "--url", "http://127.0.0.1:9"], "give the Label Studio URL and an access token"),
    (["import"], "give either a Label Studio JSON export file or --project"),
    (["import", "{f}/scores.csv"], "could not read"),
    (["import", "{f}/none.json", "--user", "ann"], "could not read"),
    (["import", "--project", "1", "--url", "http://127.0.0.1:9", "--token", "x"], "cannot reach Label Studio"),
])
def test_cli_mistakes_exit_2_with_one_line(files, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "d.sqlite"))
    code = cli(*[a.format(f=files, t=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err or __import__("re").search(message, err), err


# ------------------------------------------------------------------ the real server

def _say(request, line: str) -> None:
    """Print past pytest's capture, so that the line shows in a plain run."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def _unavailable(request, reason: str):
    line = f"Label Studio tests: {reason}"
    _say(request, line)
    if os.environ.get("CI"):  # make test installs it: in CI a server that cannot start is a failure
        pytest.fail(line)
    pytest.skip(line)


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """A real Label Studio server on a free loopback port, with a throwaway user and API token."""
    import labelstudio_server

    try:
        import label_studio_sdk  # noqa: F401
        srv = labelstudio_server.start(tmp_path_factory.mktemp("label_studio"))
    except (ImportError, labelstudio_server.Unavailable, OSError) as exc:
        _unavailable(request, str(exc))
    _say(request, f"Label Studio server started in {srv.seconds:.1f} s at {srv.url}")
    yield srv
    srv.stop()


def _choice(name):
    return [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [name]}}]


@pytest.mark.labelstudio
def test_round_trip_through_a_real_label_studio(server, files, tmp_path, monkeypatch, capsys):
    from label_studio_sdk import LabelStudio

    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    train = load_file(files / "train.parquet")

    # out: ten flagged samples become a project, and an import file with its labelling config
    assert cli("export", "--train", files / "train.parquet", "--test", files / "test.parquet", "--scores",
               files / "scores.csv", "--method", "heldout_margin", "--title", "digits check",
               "--out", tmp_path / "tasks.json", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    client = LabelStudio(base_url=server.url, api_key=server.token)
    by_hand = client.projects.create(title="by hand", label_config=(tmp_path / "tasks.label_config.xml").read_text())
    client.projects.import_tasks(by_hand.id, request=json.loads((tmp_path / "tasks.json").read_text()))
    assert len(list(client.tasks.list(project=by_hand.id))) == 10  # Label Studio takes the file and its config
    project = client.projects.get(out["project"])
    assert project.title == "digits check" and project.model_version == GIVEN_VERSION
    tasks = sorted(client.tasks.list(project=project.id, fields="all"), key=lambda t: t.data["ogdash_id"])
    assert [t.data["ogdash_id"] for t in tasks] == out["ids"] and len(tasks) == 10
    first = tasks[0]
    versions = {p.model_version: p for p in first.predictions}
    given = train.classes[train.y[train.positions([first.data["ogdash_id"]])[0]]]
    assert versions[GIVEN_VERSION].result[0]["value"]["choices"] == [given] == [first.data["given"]]
    assert versions["ogdash heldout_margin"].score == first.data["score"]

    # a person annotates three: the suggestion, the given label, a third class; and skips a fourth
    a, b, c, d = tasks[:4]
    third = next(n for n in train.classes if n not in (c.data["given"], c.data["suggested"]))
    made = [client.annotations.create(id=a.id, result=_choice(a.data["suggested"])),
            client.annotations.create(id=b.id, result=_choice(b.data["given"])),
            client.annotations.create(id=c.id, result=_choice(third))]
    client.annotations.create(id=d.id, result=[], was_cancelled=True)

    # back: three decisions under the annotator's Label Studio email
    assert cli("import", "--project", project.id, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["added"], result["kept"], result["relabelled"], result["skipped"]) == (3, 1, 2, 1)
    store = DecisionStore(tmp_path / "decisions.sqlite")
    cur = store.current(train.fingerprint())
    assert cur["reviewer"].unique().tolist() == [server.email]
    by_id = cur.set_index("sample_id")
    assert by_id.loc[a.data["ogdash_id"], "decision"] == "relabel"
    assert by_id.loc[a.data["ogdash_id"], "new_label"] == train.classes.index(a.data["suggested"])
    assert by_id.loc[b.data["ogdash_id"], "decision"] == "keep" and pd.isna(by_id.loc[b.data["ogdash_id"], "new_label"])
    assert by_id.loc[c.data["ogdash_id"], "new_label"] == train.classes.index(third)
    assert d.data["ogdash_id"] not in by_id.index

    # importing twice changes nothing, from the server or from the project's JSON export file
    history = store.history(train.fingerprint())
    assert cli("import", "--project", project.id) == 0
    export = tmp_path / "export.json"
    export.write_text(json.dumps(client.projects.exports.as_json(project.id)))  # what Export -> JSON downloads
    assert cli("import", export, "--json") == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(store.history(train.fingerprint()), history)

    # an annotation changed in Label Studio comes back as the newer decision
    client.annotations.update(made[0].id, result=_choice(a.data["given"]))
    assert cli("import", "--project", project.id) == 0
    assert "1 new decisions" in capsys.readouterr().out
    assert store.current(train.fingerprint()).set_index("sample_id").loc[a.data["ogdash_id"], "decision"] == "keep"
    assert len(store.history(train.fingerprint())) == 4
