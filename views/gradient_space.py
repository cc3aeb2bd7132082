import numpy as np
import streamlit as st

from ogdash.budget import suggest_budget
from ogdash.detectors import DETECTORS, RECOMMENDED, flag, score
from ogdash.ensemble import ENSEMBLES, describe
from ogdash.errors import OgdashError
from ogdash.gradients import selectable_layers
from ogdash.layout2d import layout_2d
from ogdash.metrics import detection_metrics
from ogdash.ui import plots
from ogdash.ui.state import (active_gradients, active_model, active_splits, keep, key_of, layer_choice, memo,
                             model_key, progress_bar)

st.title("Gradient space")
st.markdown("Each training sample's loss gradient is a point. Samples that hurt the model are a minority "
            "with unusual gradients: a detector scores how much each one stands out. "
            "**Higher score = more detrimental.**")

splits = active_splits()
model = active_model() if splits is not None else None
if model is None:
    st.info("Train or load a model on the **Data & model** page first.")
    st.page_link("views/data.py", label="Data & model", icon=":material/database:")
    st.stop()
train = splits.train

layers = ["last"] + [name for name in selectable_layers(model) if name != "head"]
c1, c2 = st.columns([2, 1])
keep("_layer", layer_choice() if layer_choice() in layers else "last")
st.session_state["layer"] = c1.selectbox(
    "Layer", layers, key="_layer", format_func=lambda n: "last linear layer (closed form, default)" if n == "last" else n,
    help="Gradients of the chosen parameters; the last layer costs one forward pass.")
pair = active_gradients()
if c2.button("Extract gradients", type="primary", disabled=pair is not None):
    bar, cb = progress_bar("Extracting gradients")
    try:
        pair = active_gradients(extract=True, progress=cb)
    except OgdashError as e:
        st.error(str(e))
    bar.empty()
if pair is None:
    st.info("Press **Extract gradients**; they are cached on disk, so this happens once per model and layer.")
    st.stop()
grads, val_grads = pair
st.caption(f"{grads.n} gradients of {grads.dim} coordinates ({'kept as factors e ⊗ h' if grads.factored else 'dense'}).")

# widget values are kept outside the widgets, so they survive a visit to another page
prev = st.session_state.get("flags", {"detector": RECOMMENDED, "budget": 0.05, "layout": "pca"})
detectors = list(DETECTORS)
BUDGET_RANGE = (0.01, 0.5)


def detector_label(name: str) -> str:
    return DETECTORS[name] + (" (recommended)" if name == RECOMMENDED else "")


def scores_of(name: str) -> np.ndarray:
    # the same memo key as ogdash.ui.state.active_scores, so the Review page reuses these scores
    return memo(key_of("scores", model_key(), layer_choice(), name),
                lambda: score(grads, name, val_grads, seed=0, labels=train.y))


def suggested():
    source = "probe" if grads.acts is not None else "model"  # the probe reads the last layer's inputs
    return memo(key_of("suggested_budget", model_key(), layer_choice(), source),
                lambda: suggest_budget(grads, train.y, source=source))


def use_suggested(value: float) -> None:
    st.session_state["_budget"] = value  # runs before the rerun, so before the slider is drawn


c1, c2, c3 = st.columns(3)
keep("_detector", prev["detector"])
keep("_budget", float(prev["budget"]))
keep("_layout", prev.get("layout", "pca"))
detector = c1.selectbox("Detector", detectors, key="_detector", format_func=detector_label,
                        help=f"Recommended: {DETECTORS[RECOMMENDED]}, the best detector in the detection benchmark "
                             "(README).")
budget = c2.slider("Budget (fraction flagged)", *BUDGET_RANGE, step=0.01, key="_budget")
layout = c3.selectbox("Layout", ["pca", "umap"], key="_layout", format_func={"pca": "PCA", "umap": "UMAP (slower)"}.get,
                      help="A 2-D gradient is drawn as is.")
if detector in ENSEMBLES:
    st.caption(describe(detector))
try:
    scores = scores_of(detector)
    estimate = suggested()
except OgdashError as e:
    st.error(str(e))
    st.stop()
value = round(min(max(estimate.budget, BUDGET_RANGE[0]), BUDGET_RANGE[1]), 2)
c1, c2 = st.columns([3, 1])
c1.markdown(f"**Suggested budget: {estimate.fraction:.1%}** ({estimate.level:.0%} interval "
            f"{estimate.low:.1%}–{estimate.high:.1%}): the share of training samples whose given label looks wrong, "
            "estimated by confident learning from "
            + ("a last layer refitted without each sample" if estimate.source == "probe"
               else "the model's own probabilities") + ", without any true labels."
            + ("" if value == round(estimate.budget, 2) else f" The slider goes from {BUDGET_RANGE[0]:.0%} "
               f"to {BUDGET_RANGE[1]:.0%}, so it would be set to {value:.0%}."))
c2.button("Use suggested budget", on_click=use_suggested, args=(value,), disabled=abs(budget - value) < 1e-9)
flags = flag(scores, budget)
st.session_state["flags"] = {"detector": detector, "budget": budget, "layout": layout, "ids": train.ids[flags].tolist()}

left, right = st.columns([2, 1])
with right:
    cut = float(np.min(scores[flags]))
    st.plotly_chart(plots.score_histogram(scores, cut, int(flags.sum())), width="stretch")
    if train.noisy is not None:
        m = detection_metrics(flags, scores, train.noisy)
        st.markdown("**Against the known true labels**")
        a, b = st.columns(2)
        a.metric("Precision", f"{m['precision']:.2f}")
        b.metric("Recall", f"{m['recall']:.2f}")
        a.metric("AUROC", f"{m['auroc']:.3f}")
        b.metric("Detection accuracy", f"{m['accuracy']:.1%}", help="flagged vs truly mislabeled, over all training samples")
with left:
    with st.spinner(f"Computing the {layout.upper()} layout…"):
        coords, axis = memo(key_of("layout", model_key(), layer_choice(), layout), lambda: layout_2d(grads, layout))
    fig = plots.gradient_scatter(coords, train.ids, train.y, grads.predicted, scores, flags, train.classes, axis)
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso", "points"),
                            key="gradient_plot")

selected = sorted({int(p["customdata"][0]) for p in (event.selection.points if event else [])})
if selected:
    st.session_state["selection"] = selected
if st.session_state.get("selection"):
    n = len(st.session_state["selection"])
    c1, c2 = st.columns([3, 1])
    c1.success(f"{n} samples selected (box or lasso on the plot). They are waiting in the review gallery.")
    if c2.button("Clear selection"):
        st.session_state.pop("selection")
        st.rerun()
st.page_link("views/review.py", label="Review the suspects", icon=":material/fact_check:")
