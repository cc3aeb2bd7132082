"""Gradient space: extract gradients, choose a detector and a budget, and see the flagged samples stand out."""
import streamlit as st

from dashboard.escape import error
from dashboard.scan import active_scan, loaded
from dashboard.state import BUDGET_RANGE, SELECTION_IN_URL, bound, memo, progress_bar, view
from ogdash.core.errors import OgdashError
from ogdash.pipeline import DETECTORS, ENSEMBLES, RECOMMENDED, describe
from views.gradient_space_parts import (
    histogram,
    layout_label,
    layout_of,
    scatter,
    selected_ids,
)

st.title("Gradient space")
st.markdown("Each training sample's loss gradient is a point. Samples that hurt the model are a minority "
            "with unusual gradients: a detector scores how much each one stands out. "
            "**Higher score = more detrimental.**")

scan = active_scan()
splits = loaded(scan)
model = scan.model(compute=False) if splits is not None else None
if model is None:
    st.info("Train or load a model on the **Data & model** page first.")
    st.page_link("views/data.py", label="Data & model", icon=":material/database:")
    st.stop()
train = splits.train

layers = scan.layers()
c1, c2 = st.columns([2, 1])
v = view()
if v["layer"] not in layers:  # a link or another model named a layer this model lacks
    v["layer"] = "last"
    scan = active_scan()
bound("layer", c1.selectbox, "Layer", layers,
      format_func=lambda n: "last linear layer (closed form, default)" if n == "last" else n,
      help="Gradients of the chosen parameters; the last layer costs one forward pass.")
grads = scan.gradients(compute=False)
if c2.button("Extract gradients", type="primary", disabled=grads is not None):
    bar, cb = progress_bar("Extracting gradients")
    try:
        grads = scan.gradients(progress=cb)
    except OgdashError as e:
        error(e)
    bar.empty()
if grads is None:
    st.info("Press **Extract gradients**; they are cached on disk, so this happens once per model and layer.")
    st.stop()
st.caption(f"{grads.n:,} gradients of {grads.dim:,} coordinates ({'kept as factors e ⊗ h' if grads.factored else 'dense'}).")

detectors = list(DETECTORS)


def detector_label(name: str) -> str:
    return DETECTORS[name] + (" (recommended)" if name == RECOMMENDED else "")


def use_suggested() -> None:
    view()["budget"] = "auto"  # runs before the rerun, so before the slider is drawn


try:
    if memo(scan.key("probabilities")) is None:  # once per model: a cross-fit can take a minute, so say so
        bar, cb = progress_bar("Judging each sample by a model that never saw its label")
        try:
            scan.probabilities(progress=cb)
            scan.suggested()  # every sample's suggested label: 0.6 s at a million, paid here rather than on Review
        finally:
            bar.empty()
    estimate = scan.suggested_budget()
except OgdashError as e:
    error(e)
    st.stop()
value = round(min(max(estimate.budget, BUDGET_RANGE[0]), BUDGET_RANGE[1]), 2)  # where the slider shows it
auto = v["budget"] == "auto"
c1, c2, c3 = st.columns(3)
detector = bound("detector", c1.selectbox, "Detector", detectors, format_func=detector_label,
                 help=f"Recommended: {DETECTORS[RECOMMENDED]}, the best detector in the detection benchmark (README).")
bound("budget", c2.slider, "Budget (fraction flagged)", *BUDGET_RANGE, step=0.01, shown=value if auto else None,
      help="Moving it sets a budget by hand; **Use suggested budget** flags the suggested share exactly.")
layout = bound("layout", c3.selectbox, "Layout", ["pca", "umap"],
               format_func=lambda m: layout_label(m, grads.n),
               help="A 2-D gradient is drawn as is. A layout is computed once per model and kept on disk.")
if detector in ENSEMBLES:
    st.caption(describe(detector))
try:
    scores, flags = scan.scores(), scan.flags()
    inliers = scan.inliers_note()
except OgdashError as e:
    error(e)
    st.stop()
if inliers:
    st.caption(inliers)
c1, c2 = st.columns([3, 1])
c1.markdown(f"**Suggested budget: {estimate.fraction:.1%}** ({estimate.level:.0%} interval "
            f"{estimate.low:.1%}–{estimate.high:.1%}): the share of training samples whose given label looks wrong, "
            "estimated by confident learning from "
            + ("a last layer refitted without each sample" if estimate.source == "probe"
               else "the model's own probabilities") + ", without any true labels."
            + (f" **In use: {int(flags.sum()):,} samples flagged**, exactly the suggested share (the slider shows it "
               f"rounded to {value:.0%})." if auto else ""))
if not estimate.reliable:
    c1.warning(estimate.warning)
c2.button("Use suggested budget", on_click=use_suggested, disabled=auto)

left, right = st.columns([2, 1])
with right:
    st.plotly_chart(histogram(scan, scores, flags), width="stretch")
    if train.truth_known and train.noisy.any():  # injected noise: only then is there a truth to score against
        m = scan.detection()
        st.markdown("**Against the known true labels** (the noise was injected)")
        a, b = st.columns(2)
        a.metric("Precision", f"{m['precision']:.2f}")
        b.metric("Recall", f"{m['recall']:.2f}")
        a.metric("AUROC", f"{m['auroc']:.3f}")
        b.metric("Detection accuracy", f"{m['accuracy']:.1%}", help="flagged vs truly mislabeled, over all training samples")
with left:
    coords, axis = layout_of(scan, layout)
    fig, note = scatter(scan, coords, axis, grads.predicted, scores, flags)
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso", "points"),
                            key="gradient_plot")
    if note:
        st.caption(note)

selected = selected_ids(event)
if selected != st.session_state.get("_plot_selection", []):  # a new box or lasso, not the one already taken
    st.session_state["_plot_selection"] = selected
    if selected:
        v["sel"], v["show"] = selected, "selection"  # the gallery opens on the selection
if v["sel"]:
    c1, c2 = st.columns([3, 1])
    c1.success(f"{len(v['sel'])} samples selected (box or lasso on the plot). They are waiting in the review gallery."
               + (f" Over {SELECTION_IN_URL:,}, a selection is not kept in the page's address: a reload or a shared "
                  "link forgets it." if len(v["sel"]) > SELECTION_IN_URL else ""))
    if c2.button("Clear selection"):
        v["sel"], v["show"] = [], "flagged"
        st.rerun()
st.page_link("views/review.py", label="Review the suspects", icon=":material/fact_check:")
