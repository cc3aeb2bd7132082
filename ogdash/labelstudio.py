"""Label Studio round trip: flagged samples out as a labelling project, annotations back as review decisions.

Out (:func:`make_tasks`, then :func:`write_import_file` or :func:`push`): one task per sample with

- ``data``: what the annotator sees: the image (a PNG data URI), the feature row as text
  (``name: value`` lines) or the text; ``ogdash_id`` (the stable sample id), ``ogdash_source``
  (``row 7``, ``line 12``, a file path; Label Studio reserves ``$source`` for the whole task), ``given`` (the given class name) and, when known,
  ``suggested`` and ``score`` (higher = more detrimental), so Label Studio's data manager can
  sort and filter by them;
- ``predictions``: the given label as model version ``given label`` (the project pre-fills
  the editor with it: the annotator changes it only where it is wrong) and ogdash's
  suggested label as model version ``ogdash <method>``, with the score when it lies in [0, 1]
  (Label Studio shows it as a percentage; the task's ``score`` always holds it);
- ``meta``: what the way back needs: the dataset fingerprint that decisions are keyed on,
  the class names and the given class index.

Back (:func:`fetch_tasks` or :func:`read_export`, then :func:`import_decisions`): each
submitted annotation becomes one decision by its annotator, known by user id (the server's
email, else username, for that id; in an export file, ``--user ID=NAME`` or ``label studio
user ID``, never an email the file carries): ``relabel`` to the chosen class when it differs
from the given one, ``keep`` otherwise. Skipped (cancelled) annotations and annotations without a
choice are counted, not imported. A decision is stamped with the annotation's ``updated_at`` and noted with
its project, task and annotation ids, and goes through :meth:`DecisionStore.import_`, which
skips a decision already stored: importing the same annotations twice adds nothing, and
an annotation edited in Label Studio since the last import comes back as a newer decision.

The server is reached through ``label-studio-sdk`` (imported only by :func:`push` and
:func:`fetch_tasks`); everything else is plain JSON.
"""
from __future__ import annotations

import base64
import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping
from xml.sax.saxutils import quoteattr

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Dataset
from ogdash.review import DecisionStore

GIVEN_VERSION = "given label"  # the model version of the given-label pre-annotation
CONTROL = "label"              # the Choices tag's name in the labelling config
MIN_SIDE = 128                 # small images are enlarged (nearest neighbour) to at least this many pixels
BATCH = 200                    # tasks per import request


# ---------------------------------------------------------------- out

def label_config(ds: Dataset) -> str:
    """The Label Studio labelling config for ``ds``: the sample, its given label, one choice per class."""
    obj = {"image": '<Image name="sample" value="$image" zoom="true" maxWidth="320px"/>',
           "features": '<Text name="sample" value="$features"/>',
           "text": '<Text name="sample" value="$text"/>'}[ds.kind]
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in ds.classes)
    choices = (f'  <Choices name="{CONTROL}" toName="sample" choice="single" showInline="true" required="true">\n'
               f"{choices}\n  </Choices>\n")
    header = '  <Header value="Given label: $given ($ogdash_source, ogdash id $ogdash_id)" size="5"/>\n'
    body = f"  {obj}\n{choices}" if ds.kind == "image" else f"{choices}  {obj}\n"  # long feature rows: choices first
    return f"<View>\n{header}{body}</View>\n"


def make_tasks(ds: Dataset, ids, suggested=None, scores=None, method: str | None = None) -> list[dict]:
    """One Label Studio task per sample id in ``ids`` (see the module docstring).

    suggested: (len(ids),) class indices ogdash suggests, or None; scores: (len(ids),)
    floats, higher = more detrimental, or None; method: the detector, named in the
    suggestion's model version (``ogdash <method>``, else ``ogdash``).
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if len(ids) == 0:
        raise OgdashError("no samples to export; flag some samples (or mark some 'unsure') first.")
    for what, values in (("suggested labels", suggested), ("scores", scores)):
        if values is not None and len(values) != len(ids):
            raise OgdashError(f"got {len(values)} {what} for {len(ids)} samples; give one per sample.")
    pos = ds.positions(ids)
    fingerprint = ds.fingerprint()
    tasks = []
    for k, p in enumerate(pos):
        given = int(ds.y[p])
        data = {ds.kind: _shown(ds, p), "ogdash_id": int(ds.ids[p]), "ogdash_source": ds.source(p),
                "given": ds.classes[given]}
        predictions = [{"model_version": GIVEN_VERSION, "result": [_choice(ds.classes[given])]}]
        if suggested is not None:
            s = int(suggested[k])
            if not 0 <= s < ds.n_classes:
                raise OgdashError(f"suggested label {s} for sample {int(ds.ids[p])} is not a class index "
                                  f"0..{ds.n_classes - 1}; give labels of this dataset.")
            data["suggested"] = ds.classes[s]
            suggestion = {"model_version": f"ogdash {method}" if method else "ogdash", "result": [_choice(ds.classes[s])]}
            if scores is not None:
                data["score"] = round(float(scores[k]), 6)
                if 0.0 <= data["score"] <= 1.0:  # Label Studio shows a prediction's score as a percentage
                    suggestion["score"] = data["score"]
            predictions.append(suggestion)
        elif scores is not None:
            data["score"] = round(float(scores[k]), 6)
        tasks.append({"data": data, "predictions": predictions,
                      "meta": {"ogdash_dataset": fingerprint, "ogdash_classes": list(ds.classes),
                               "ogdash_given": given}})
    return tasks


def _choice(name: str) -> dict:
    return {"from_name": CONTROL, "to_name": "sample", "type": "choices", "value": {"choices": [name]}}


def _shown(ds: Dataset, p: int):
    """The sample as the annotator sees it: a PNG data URI, its text, or its feature row as lines."""
    if ds.kind == "text":
        return ds.texts[p]
    if ds.kind == "features":
        names = ds.feature_names or tuple(f"x{j}" for j in range(ds.X.shape[1]))
        return "\n".join(f"{n}: {v:.6g}" for n, v in zip(names, ds.X[p].tolist()))
    from PIL import Image

    img = ds.view(p)
    scale = max(1, -(-MIN_SIDE // max(img.shape[:2])))
    img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_import_file(tasks: list[dict], config: str, path) -> tuple[Path, Path]:
    """Write ``tasks`` as a Label Studio import file (.json) and the labelling config beside it (.xml).

    For people without API access: create a project, paste the .xml under Settings ->
    Labeling Interface -> Code, import the .json, and choose the ``given label``
    predictions to pre-label tasks (Settings -> Annotation).
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise OgdashError(f"{path.name}: a Label Studio import file ends in .json; give such a name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    xml = path.with_name(path.stem + ".label_config.xml")
    xml.write_text(config, encoding="utf-8")
    return path, xml


def push(tasks: list[dict], config: str, url: str, token: str, title: str = "ogdash review") -> int:
    """Create a Label Studio project at ``url`` holding ``tasks``; return its id.

    The project pre-fills each task with its given label (model version ``given label``).
    """
    client = _client(url, token)
    project = _call(url, lambda: client.projects.create(
        title=title, label_config=config, model_version=GIVEN_VERSION,
        description="Samples flagged by ogdash (outlier gradient analysis). Change the label only where the "
                    "given one is wrong; skip a task you cannot judge."))
    for start in range(0, len(tasks), BATCH):
        _call(url, lambda: client.projects.import_tasks(project.id, request=tasks[start:start + BATCH]))
    return int(project.id)


# ---------------------------------------------------------------- back

def fetch_tasks(url: str, token: str, project: int) -> tuple[list[dict], dict[int, str]]:
    """The tasks of ``project`` with their annotations, and the server's users as {id: email or username}."""
    client = _client(url, token)
    pager = _call(url, lambda: client.tasks.list(project=project, fields="all"))
    tasks = _call(url, lambda: [{"id": t.id, "project": project, "data": t.data, "meta": t.meta or {},
                                 "annotations": [a if isinstance(a, dict) else a.model_dump(mode="json") for a in t.annotations or []]}
                                for t in pager])
    users = _call(url, lambda: {int(u.id): (u.email or u.username or "") for u in client.users.list()})
    return tasks, {k: v for k, v in users.items() if v}


def read_export(path) -> list[dict]:
    """The tasks of a Label Studio JSON export file (Export -> JSON)."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OgdashError(f"could not read {path} as a Label Studio JSON export ({type(exc).__name__}); "
                          "export the project as JSON.") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise OgdashError(f"{path.name}: is not a list of tasks; export the project as JSON (not JSON-MIN or CSV).")
    return tasks


@dataclass
class ImportResult:
    """What an import found and stored."""

    added: int = 0                       # decisions new to the store
    annotations: int = 0                 # submitted annotations with a choice, as decisions
    kept: int = 0
    relabelled: int = 0
    skipped: int = 0                     # cancelled (skipped) annotations and ones without a choice: not imported
    reviewers: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def decisions_from_tasks(tasks: Iterable[Mapping], users: Mapping[int, str] | None = None
                         ) -> tuple[list[dict], int]:
    """(decision records in DecisionStore's export form, number of annotations not imported)."""
    users = users or {}
    rows, skipped = [], 0
    for task in tasks:
        meta, data = task.get("meta") or {}, task.get("data") or {}
        tid = task.get("id", "?")
        if "ogdash_id" not in data or not {"ogdash_dataset", "ogdash_classes", "ogdash_given"} <= set(meta):
            raise OgdashError(f"task {tid}: was not exported by ogdash (no ogdash_id or ogdash metadata); "
                              "import the project that ogdash exported.")
        classes = list(meta["ogdash_classes"])
        for ann in task.get("annotations") or []:
            chosen = [c for r in ann.get("result") or [] if r.get("from_name") == CONTROL
                      for c in (r.get("value") or {}).get("choices") or []]
            if ann.get("was_cancelled") or not chosen:
                skipped += 1
                continue
            if len(chosen) > 1 or chosen[0] not in classes:
                raise OgdashError(f"task {tid}: annotation {ann.get('id')} chose {chosen}, not one class of "
                                  f"{classes[:5]}{'…' if len(classes) > 5 else ''}; fix it in Label Studio.")
            new = classes.index(chosen[0])
            relabel = new != int(meta["ogdash_given"])
            rows.append({"dataset": meta["ogdash_dataset"], "sample_id": data["ogdash_id"],
                         "decision": "relabel" if relabel else "keep", "new_label": new if relabel else None,
                         "reviewer": annotator(ann.get("completed_by"), users),
                         "timestamp": ann.get("updated_at") or ann.get("created_at"),
                         "note": f"Label Studio project {task.get('project', ann.get('project', '?'))}, task {tid}, "
                                 f"annotation {ann.get('id')}"})
    return rows, skipped


def annotator(completed_by, users: Mapping[int, str]) -> str:
    """The reviewer name of an annotation's ``completed_by``, by the user's id: the name ``users`` gives it (the
    server's user list, or ``--user ID=NAME``), else ``label studio user ID``.

    An export file may carry the user itself (``{"id": 3, "email": "boss@example.org"}``); that email is text in
    a file anyone can edit, so it never chooses who decided."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    try:
        key = int(completed_by)
    except (TypeError, ValueError):
        return "label studio user ?"
    return users.get(key) or f"label studio user {key}"


def import_decisions(store: DecisionStore, tasks: Iterable[Mapping], users: Mapping[int, str] | None = None
                     ) -> ImportResult:
    """Store the annotations of ``tasks`` as review decisions; importing the same ones again adds nothing."""
    rows, skipped = decisions_from_tasks(tasks, users)
    result = ImportResult(annotations=len(rows), skipped=skipped,
                          kept=sum(r["decision"] == "keep" for r in rows),
                          relabelled=sum(r["decision"] == "relabel" for r in rows),
                          reviewers=sorted({r["reviewer"] for r in rows}),
                          datasets=sorted({r["dataset"] for r in rows}))
    seen = _imported(store, result.datasets)
    rows = [r for r in rows if (r["note"], _utc(r["timestamp"])) not in seen]
    if rows:
        with tempfile.TemporaryDirectory(prefix="ogdash-labelstudio-") as tmp:
            path = Path(tmp) / "decisions.json"
            path.write_text(json.dumps(rows), encoding="utf-8")
            result.added = store.import_(path)  # the store's own dedup: same fields and timestamp = same decision
    return result


def _imported(store: DecisionStore, datasets: list[str]) -> set[tuple[str, str]]:
    """(note, timestamp) of every stored decision: an annotation version already imported, under any reviewer
    name (an export file names annotators by id, the server by email), is not imported again."""
    seen = set()
    for dataset in datasets:
        history = store.history(dataset)
        seen |= set(zip(history["note"], history["timestamp"]))
    return seen


def _utc(stamp) -> str:
    """A timestamp as the store writes it (UTC, microseconds), or as given when it is not one."""
    try:
        t = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)  # the store's import rejects it with its own message
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat(timespec="microseconds")


def unsure_ids(store: DecisionStore, dataset: str, reviewer: str | None = None) -> np.ndarray:
    """Sample ids whose latest decision (by ``reviewer``, or by anyone) is ``unsure``."""
    history = store.history(dataset)
    if reviewer is not None:
        history = history[history["reviewer"] == reviewer]
    latest = history.groupby("sample_id").tail(1)  # history is oldest first
    return np.sort(latest.loc[latest["decision"] == "unsure", "sample_id"].to_numpy(dtype=np.int64))


# ---------------------------------------------------------------- the server

def _client(url: str, token: str):
    if not url or not token:
        raise OgdashError("give the Label Studio URL and an access token (Account & Settings in Label Studio); "
                          "without API access, write an import file instead.")
    try:
        from label_studio_sdk import LabelStudio
    except ModuleNotFoundError:
        raise OgdashError("talking to a Label Studio server needs the 'label-studio-sdk' package; install it with "
                          "pip install 'ogdash[labelstudio]', or write an import file instead.") from None
    return LabelStudio(base_url=url.rstrip("/"), api_key=token)


def _call(url: str, fn):
    """Run one SDK call; a refused connection or an API error becomes an OgdashError that says what to do."""
    try:
        return fn()
    except OgdashError:
        raise
    except Exception as exc:  # httpx transport errors, the SDK's ApiError
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            raise OgdashError(f"Label Studio at {url} refused the access token ({status}); copy the token from "
                              "Account & Settings.") from None
        if status == 404:
            raise OgdashError(f"Label Studio at {url} has no such project (404); check the project id.") from None
        if status is not None:
            body = str(getattr(exc, "body", ""))[:160]
            raise OgdashError(f"Label Studio at {url} answered {status}: {body}") from None
        raise OgdashError(f"cannot reach Label Studio at {url} ({type(exc).__name__}); start it or check the URL.") from None
