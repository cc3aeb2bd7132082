"""Synthetic demo: the paper's Figure 1 and Table 1, live (Chhabra et al., Section 4)."""
import streamlit as st

from dashboard.escape import error
from dashboard.state import whole_table
from ogdash.core.errors import OgdashError
from ogdash.data.synthetic import FLIP_MODES
from ogdash.experiments import synthetic as study
from views import synthetic_parts as parts

st.title("Synthetic demo: Figure 1 and Table 1, live")
st.markdown(parts.INTRO)

# ------------------------------------------------------------------ the case
with st.container(border=True):
    c = st.columns([1.4, 1.3, 0.8, 1.1, 0.9])
    dataset = c[0].radio("Dataset", list(study.DATASETS), format_func=study.DATASETS.get, key="syn_dataset",
                         index=1)
    preset = c[1].selectbox(
        "Model", list(study.MODEL_PRESETS), key="syn_model", disabled=dataset == "blobs",
        format_func=lambda p: {"default": "MLP 16-16 (default)", "paper_mlp": "the paper's 2-2-2-1 MLP"}[p]
        if dataset == "moons" else "logistic regression, no intercept",
        help="The paper's 2-2-2-1 net has a 2-D last-layer gradient, drawn as is, but it collapses (dead ReLUs) "
             "on some seeds and trains 5,000 epochs. The 16-16 MLP is steadier.")
    preset = "default" if dataset == "blobs" else preset
    seed = int(c[2].number_input("Seed", 0, 100_000, 0, key="syn_seed",
                                 help="Seeds the data, the flips and the model's initialisation."))
    flip_mode = c[3].radio("Flip mode", FLIP_MODES, key="syn_flip_mode", horizontal=True,
                           help="far: flips on the far side of each class, as in the paper's released data "
                                "(easy outliers). uniform: flips anywhere in the class (harder).")
    n_train = 150 if dataset == "blobs" else 250
    n_flips = int(c[4].number_input("Flipped labels", 2, n_train // 3, study.DEFAULT_FLIPS[dataset],
                                    key=f"syn_flips_{dataset}", help="Split equally between the two classes."))
    c = st.columns([1.4, 2.4])
    detector = c[0].selectbox("Detector (panel D/H and the trim button)", list(study.DETECTOR_NAMES),
                              format_func=study.DETECTOR_NAMES.get, key="syn_detector",
                              help="\n".join(f"- {study.DETECTOR_NAMES[k]}: {study.DETECTOR_HELP[k]}"
                                             for k in study.DETECTOR_NAMES))
    budget_pct = int(c[1].slider("Budget: % of training samples flagged", 1, 30, 10, key="syn_budget",
                                 help="10% is what the paper's released code flags in this experiment."))
epochs = parts.EPOCHS
args = (dataset, seed, flip_mode, n_flips, preset, epochs)
budget = budget_pct / 100
letters = "ABCD" if dataset == "blobs" else "EFGH"

try:
    with st.spinner("Training the model and computing every method's scores (once per case)..."):
        result = parts.analysis(*args)
except OgdashError as e:
    error(e)
    st.stop()
except Exception as e:  # show what went wrong, never a traceback
    error(f"Could not run this case: {type(e).__name__}: {e}")
    st.stop()

train = result.case.splits.train
scores, flags, det = study.detector_flags(result, detector, budget)

# ------------------------------------------------------------------ Figure 1
st.subheader(f"Figure 1 {letters[0]}-{letters[-1]}: {study.DATASETS[dataset].split(',')[0].lower()}, "
             f"{result.case.model_name}")
for note in result.notes:
    st.warning(note)
m = st.columns(4)
m[0].metric("Test accuracy (trained on noisy labels)", f"{result.accuracy_before:.1%}")
m[1].metric("Flagged", f"{int(flags.sum())} of {train.n}", help=f"budget {budget_pct}% of {train.n}")
m[2].metric("Flagged that were truly flipped", f"{det['n_flagged_noisy']} of {det['n_noisy']}")
m[3].metric("Outlier detection accuracy", f"{det['accuracy']:.1%}",
            help="Share of all training samples where 'flagged' equals 'truly flipped' (the paper's metric).")
panels = parts.figure1(result, flags, scores, study.DETECTOR_NAMES[detector], letters)
for row in (panels[:2], panels[2:]):
    cols = st.columns(2)
    for col, fig in zip(cols, row):
        col.plotly_chart(fig, width="stretch")
st.caption(parts.figure1_caption(result, letters, study.DETECTOR_NAMES[detector]))

# ------------------------------------------------------------------ trim and retrain
st.subheader("Trim and retrain")
st.markdown(f"Remove the {int(flags.sum())} samples flagged by **{study.DETECTOR_NAMES[detector]}** and retrain from the "
            "same initial weights (same seed); accuracy is measured on the untouched test set.")
retrain_key = (args, detector, budget_pct)
if st.button("Trim the flagged samples and retrain", key="syn_retrain_button", type="primary"):
    try:
        with st.spinner("Retraining on the trimmed set..."):
            st.session_state["syn_retrain"] = (retrain_key, parts.trim_retrain(*args, study.DETECTOR_METHODS[detector],
                                                                              budget_pct))
    except OgdashError as e:
        error(e)
    except Exception as e:
        error(f"Retraining failed: {type(e).__name__}: {e}")
kept = st.session_state.get("syn_retrain")
if kept is not None and kept[0] == retrain_key:
    summary, trimmed = kept[1]
    r = st.columns(4)
    r[0].metric("Test accuracy before", f"{summary['accuracy_before']:.1%}")
    r[1].metric("Test accuracy after", f"{summary['accuracy_after']:.1%}",
                delta=f"{100 * (summary['accuracy_after'] - summary['accuracy_before']):+.1f} pts")
    r[2].metric("After removing as many at random", f"{summary['accuracy_random']:.1%}",
                help="the control: the same seed, the same number of samples removed at random")
    r[3].metric("Trimmed that were truly flipped", f"{summary['removed_truly_noisy']} of {summary['n_removed']}")
    st.caption("One seed: no spread measured. Table 1 below runs several.")
    st.dataframe(trimmed, hide_index=True, width="stretch")

# ------------------------------------------------------------------ Table 1
st.subheader(f"Table 1: every method on this case, budget {budget_pct}%")
c = st.columns([1.2, 1.5, 1.3])
n_seeds = int(c[0].slider("Seeds", 1, 10, 1, key="syn_seeds",
                          help=f"Runs seeds {seed} to {seed}+n-1 (each: its own data, flips and model) and shows "
                               "mean ± std over them."))
predicted = c[1].toggle("Label quality: predicted labels (paper's code)", key="syn_predicted",
                        help="Off: the three label-quality baselines are fed the given noisy labels (the textbook "
                             "baseline, which ranks by disagreement with the label). On: they are fed the model's "
                             "predicted labels, as the paper's released code does, which ranks by low confidence "
                             "instead. The rows say which.")
post_trim = c[2].toggle("Measure post-trim accuracy", value=True, key="syn_post_trim",
                        help="Retrains once per seed and per distinct trimmed set; the models are cached on disk.")
variant = "predicted" if predicted else "given"
seeds = list(range(seed, seed + n_seeds))
try:
    table = parts.table1(dataset, seeds, flip_mode, n_flips, preset, epochs, budget_pct, variant, post_trim,
                        result.case.model_name)
except OgdashError as e:
    error(e)
    st.stop()
except Exception as e:
    error(f"Could not build Table 1: {type(e).__name__}: {e}")
    st.stop()
whole_table(study.format_table1(table))
st.caption(parts.table1_caption(dataset, seeds, study.flagged_count(budget, train.n), predicted))
st.download_button("Table 1 numbers (.csv)", table.to_csv(index=False).encode(), f"table1_{dataset}.csv",
                   "text/csv", key="syn_download")

# ------------------------------------------------------------------ what to conclude
st.subheader("What to conclude")
st.markdown(parts.CONCLUSIONS)
