"""The Data & model page's forms: one per data source, each returning the chosen ``DataSpec`` (or None),
and the summary of the active data."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import plots
from dashboard.escape import error, md
from dashboard.gallery import feature_table
from dashboard.memo import file_keyed
from dashboard.state import (
    PRESET_DATA,
    PRESET_MODEL,
    PRESET_TEXT,
    bound,
    choose_data,
    data_root,
    data_spec,
    memo,
)
from dashboard.uploads import stage_upload, widget_limit_mb
from ogdash.core.cache import cache_key
from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Splits
from ogdash.data.files import resolve_under
from ogdash.data.folders import nested_class_folders, non_image_files
from ogdash.data.spec import DataSpec
from ogdash.data.text_tables import is_text_table


def spec(**settings) -> DataSpec:
    """A data choice from a form (typed paths already resolved under the data root, uploads staged), reading only
    under the data root; OgdashError says what is wrong."""
    return DataSpec(**settings, within=str(data_root()))


def builtin_form():
    """Built-in data: the preset, digits and MNIST-5k with injected noise, or the synthetic sets."""
    choice = None
    c1, c2 = st.columns([3, 1])
    c1.caption(f"**Preset, where noise hurts:** {PRESET_TEXT} Retrain there to see a fix pay (README, "
               "\"What a fix is worth\").")
    if c2.button("Use the preset", key="use_preset"):
        choose_data(PRESET_DATA, dict(PRESET_MODEL))
    name = st.selectbox("Dataset", ["digits", "mnist5k", "moons", "blobs"],
                        format_func={"digits": "Digits (1,797 8x8, scikit-learn)", "mnist5k": "MNIST-5k (5,000 28x28)",
                                     "moons": "Half-moons (synthetic)", "blobs": "Linear blobs (synthetic)"}.get)
    c1, c2, c3 = st.columns(3)
    seed = c1.number_input("Seed", 0, 10_000, 0, key="data_seed")
    if name in ("moons", "blobs"):
        flip_mode = c2.selectbox("Flip mode", ["far", "uniform"])
        if st.button("Use this data", key="use_builtin", type="primary"):
            choice = DataSpec("builtin", name=name, seed=int(seed), flip_mode=flip_mode)
    else:
        rate = c2.slider("Injected label noise", 0.0, 0.5, 0.2, 0.05)
        kind = c3.selectbox("Noise kind", ["uniform", "pairs"], help="pairs: 1↔7, 3↔8, 4↔9, 5↔6, as people confuse them")
        if st.button("Use this data", key="use_builtin", type="primary"):
            choice = DataSpec("builtin", name=name, seed=int(seed), noise_rate=float(rate), noise_kind=kind)
    return choice


ENCODER_CHOICES = {"minilm": "MiniLM (shipped sentence encoder)", "tfidf": "TF-IDF (fast, fitted on the training "
                   "texts)", "folder": "Your encoder folder (sentence-transformers / Hugging Face, safetensors)"}


def text_settings(c1, c2) -> dict:
    """The text column and encoder of a table of texts (left out of the data choice at their defaults)."""
    column = c1.text_input("Text column (tables of texts)", "", placeholder="text",
                           help="the column holding the texts; a table with a column named text is read as texts")
    kind = c2.selectbox("Encoder (tables of texts)", list(ENCODER_CHOICES), format_func=ENCODER_CHOICES.get,
                        help="texts become vectors for the model; embeddings are cached per text and encoder")
    folder = c2.text_input("Encoder folder (under the data root)", "") if kind == "folder" else ""
    out = {"text_column": column.strip() or None}
    if kind == "folder":
        if not folder.strip():
            raise OgdashError("give your encoder's folder (under the data root), or choose MiniLM or TF-IDF.")
        out["encoder"] = str(resolve_under(data_root(), folder.strip()))
    elif kind != "minilm":
        out["encoder"] = kind
    return out


def files_form():
    """Your .npz / .csv / .parquet / Hugging Face dataset: uploaded, or typed paths under the data root."""
    choice = None
    st.markdown("`.npz` with arrays `X`, `y` (optionally `y_true`, `classes`), or `.csv` with numeric feature "
                "columns and a `label` column (optionally `id`, `true_label`), or `.parquet` / a Hugging Face dataset "
                "folder (`save_to_disk`) with an image or numeric columns and a `label` or `ClassLabel` column. "
                "A `.csv`, `.tsv`, `.parquet` or dataset folder with a `text` column (or the one you name) and a "
                "`label` column (indices or class names) is a table of texts, embedded by the encoder you choose. "
                "Upload, or give paths under the data "
                f"root `{data_root()}`. Every training sample is scored; without a test set, the share you set below "
                "is held out as one (and not scored).")
    c1, c2 = st.columns(2)
    kinds = ["npz", "csv", "tsv", "parquet"]
    up_train = c1.file_uploader("Training set", type=kinds, max_upload_size=widget_limit_mb())
    up_test = c2.file_uploader("Test set", type=kinds, max_upload_size=widget_limit_mb())
    p_train = bound("train_path", c1.text_input, "…or training path")  # kept in the address, as typed
    p_test = bound("test_path", c2.text_input, "…or test path")
    share_files = c1.slider("Held out as the test set when none is given", 0.05, 0.5, 0.2, 0.05, key="files_share")
    try:
        texts = text_settings(c1, c2)
    except OgdashError as e:
        texts = e
    if st.button("Use these files", key="use_files"):
        try:
            # a typed path wins over an upload: it is what the too-large-upload message asks for
            train = str(resolve_under(data_root(), p_train)) if p_train else stage_upload(up_train)
            test = str(resolve_under(data_root(), p_test)) if p_test else stage_upload(up_test)
            if not train:
                raise OgdashError("give a training set: upload one or type its path.")
            if isinstance(texts, OgdashError):
                raise texts
            if not is_text_table(train, texts["text_column"]):  # the encoder is a setting of tables of texts only
                texts.pop("encoder", None)
            choice = spec(source="files", train=train, test=test, test_share=float(share_files), seed=0, **texts)
        except OgdashError as e:
            error(e)
    return choice


def folder_form():
    """An image folder (ImageFolder layout), with an optional test folder."""
    choice = None
    st.markdown("torchvision's `ImageFolder` layout: `ROOT/<class name>/<image files>`. Every training image is "
                "scored. The test set is a second folder with the same class names; without one, the share you set "
                "is held out (and not scored).")
    c1, c2 = st.columns(2)
    p_folder = bound("folder", c1.text_input, "Training folder (under the data root)")
    p_folder_test = bound("folder_test", c2.text_input, "Test folder (optional)")
    c1, c2, c3 = st.columns(3)
    size = c1.number_input("Resize to", 8, 128, 32)
    share_folder = c2.slider("Held out as the test set when none is given", 0.05, 0.5, 0.2, 0.05, key="folder_share")
    f_rate = c3.slider("Injected label noise (for a demo)", 0.0, 0.5, 0.0, 0.05, key="folder_noise")
    if st.button("Use this folder", key="use_folder"):
        try:
            choice = spec(source="imagefolder", path=str(resolve_under(data_root(), p_folder)), size=int(size),
                          test=str(resolve_under(data_root(), p_folder_test)) if p_folder_test.strip() else None,
                          test_share=float(share_folder), noise_rate=float(f_rate), noise_kind="uniform", seed=0)
        except OgdashError as e:
            error(e)
    return choice


def cifar_form():
    """A local CIFAR-10/100 folder with optional CIFAR-N labels."""
    choice = None
    st.markdown("A folder holding `cifar-10-batches-py/` or `cifar-100-python/` (torchvision's local format), and "
                "optionally a CIFAR-N label file (`CIFAR-10_human.pt` / `CIFAR-100_human.pt`, or an `.npz`). "
                "Batches are read with a numpy-only unpickler; nothing else is ever unpickled.")
    p_cifar = bound("cifar", st.text_input, "CIFAR folder (under the data root)")
    p_noisy = bound("cifar_labels", st.text_input, "CIFAR-N label file (optional)")
    noise_key = st.selectbox("CIFAR-N labels", ["worse_label", "aggre_label", "random_label1", "noisy_label"])
    if st.button("Use CIFAR", key="use_cifar"):
        try:
            choice = spec(source="cifar", path=str(resolve_under(data_root(), p_cifar)),
                          noisy_labels=str(resolve_under(data_root(), p_noisy)) if p_noisy else None,
                          noise_key=noise_key if p_noisy else None)
        except OgdashError as e:
            error(e)
    return choice


def data_summary(splits: Splits) -> None:
    """What the active data holds: counts, warnings about the folder, held-out samples, labels and examples."""
    train, data = splits.train, data_spec()
    st.subheader(md(data.describe()))
    if data.source == "imagefolder":
        nested = nested_class_folders(data.path)
        if nested:
            st.warning(f"The class folders hold folders of their own ({md(', '.join(nested[:3]))}): is this one level too "
                       "high? Give the folder whose sub-folders are the classes.")
        skipped = memo(cache_key("skipped", file_keyed(data.to_dict())), lambda: non_image_files(data.path))
        if skipped:
            names = md(", ".join(p.name for p in skipped[:3])) + (", …" if len(skipped) > 3 else "")
            st.warning(f"Skipped {len(skipped)} file(s) that are not images ({names}); convert them to an image "
                       "format to include them, or remove them.")
    m = st.columns(5)
    m[0].metric("Training samples", train.n)
    m[1].metric("Test samples", splits.test.n)
    m[2].metric("Validation samples", 0 if splits.val is None else splits.val.n)
    m[3].metric("Classes", train.n_classes)
    if train.truth_known:  # injected noise: only then is the truth known
        m[4].metric("Mislabeled (known, injected)", f"{train.noisy.mean():.1%}")
    if data.held_out:
        st.info(f"No test set was given, so {splits.test.n} samples ({data.test_share:.0%}, seeded) "
                "are held out as the test set. They are **not scored**; give a test set to score every sample.")
        with st.expander(f"The {splits.test.n} held-out samples"):
            st.dataframe({"id": splits.test.ids, "source": splits.test.source_list(),
                          "label": [splits.test.classes[c] for c in splits.test.y]}, hide_index=True, width="stretch")
    for note in splits.notes:
        st.caption(md(note))
    st.plotly_chart(plots.label_counts(train.label_counts(), train.classes), width="stretch")
    if train.kind == "image":  # the first image of every class, in rows that wrap
        first = np.unique(train.y, return_index=True)[1]
        st.image([train.view(i) for i in first], clamp=True, width=120,
                 caption=[md(f"{train.classes[train.y[i]]}: {train.source(i).rsplit('/', 1)[-1]}") for i in first])
    elif train.kind == "text":  # the first texts, as the file holds them
        st.dataframe({"source": train.source_list()[:8], "label": [train.classes[c] for c in train.y[:8]],
                      "text": list(train.texts[:8])}, hide_index=True, width="stretch")
    else:
        first = feature_table(train, range(min(8, train.n)))
        first.insert(0, "label", [train.classes[c] for c in train.y[:8]])
        st.dataframe(first, width="stretch")


def your_network_form(mcfg: dict, kind: str, c1, c2, c3) -> dict:
    """The fields of your own network: its architecture or factory, its weights, and whether it is a frozen
    backbone whose new head is trained here."""
    same = mcfg.get("kind") == kind
    if kind == "torchvision":
        arch = c1.text_input("Architecture name", mcfg.get("arch", "resnet18") if same else "resnet18")
    else:
        arch = c1.text_input("Factory (package.module:factory)", mcfg.get("arch", "") if same else "",
                             placeholder="ogdash.examples.own_network:classifier",
                             help="factory() takes no arguments and returns your nn.Module; its package must be "
                                  "installed and allowed by whoever runs the dashboard (OGDASH_MODEL_MODULES; "
                                  "ogdash.examples always is)")
    weights = c2.text_input("Weights file (.safetensors or .pt, under the data root)", mcfg.get("weights", "") if same
                            else "")
    use = c3.radio("Use it", ["as it is", "frozen backbone + new head"], index=int(bool(mcfg.get("new_head")) and same),
                   help="as it is: your trained network is analysed, and Trim & retrain fine-tunes it from your "
                        "weights. Frozen backbone: a new last layer for these classes is trained here on its "
                        "features (computed once and cached).")
    st.caption("Weights load with safetensors or `torch.load(weights_only=True)`: a checkpoint that carries code is "
               "refused. The gradients are those of the network's last `nn.Linear`.")
    out = {"arch": arch.strip(), "weights": weights.strip(), "new_head": use != "as it is"}
    if out["new_head"]:
        out["seed"] = int(st.number_input("Seed (the new head's initialisation)", 0, 10_000, int(mcfg.get("seed", 0))))
    return out


def checked_network(cfg: dict) -> dict:
    """Your network's settings with the weights resolved under the data root and a factory checked against the
    allowed packages; OgdashError says what is wrong."""
    from dashboard.schema import factory

    if not cfg["arch"] or not cfg["weights"]:
        raise OgdashError("give the architecture and the weights file.")
    if cfg["kind"] == "custom":
        try:
            factory(cfg["arch"])
        except ValueError as e:
            raise OgdashError(f"{cfg['arch']}: {e}.") from None
    return {**cfg, "weights": str(resolve_under(data_root(), cfg["weights"]))}


def training_budget(spec, n_train: int) -> str:
    """What training will do, in a line: steps, passes over the data and batch size."""
    r = spec.resolved(n_train)
    steps = spec.total_steps(n_train)
    per_epoch = -(-n_train // r.batch_size) if r.batch_size else 1
    how = "the default budget for this size" if spec.epochs is None else f"{spec.epochs} epochs"
    return (f"Training: {steps:,} steps of {'the full batch' if not r.batch_size else f'{r.batch_size} samples'} "
            f"({steps / per_epoch:.3g} passes over {n_train:,} samples; {how}).")
