"""Data & model: choose the data and the model; every other page works on this choice."""
import streamlit as st

from dashboard import plots
from dashboard.escape import error
from dashboard.scan import (
    active_scan,
    default_model,
    loaded,
    model_fits,
    model_kinds,
    model_spec,
    scan_of,
)
from dashboard.state import bound, choose_data, model_config, progress_bar, view
from ogdash.core.errors import OgdashError
from ogdash.models.zoo import SCALED_KINDS, scaling_of
from views.data_parts import (
    builtin_form,
    checked_network,
    cifar_form,
    data_summary,
    files_form,
    folder_form,
    training_budget,
    your_network_form,
)

st.title("Data & model")
st.caption("Choose the data and the model; every other page works on this choice.")

# ------------------------------------------------------------------ data
FORMS = {"Built-in": builtin_form, "Your .npz / .csv": files_form, "Image folder": folder_form,
         "CIFAR-10/100": cifar_form}
if view()["tab"] not in FORMS:  # the address keeps the open tab (a tab switch reruns, so old errors go)
    view()["tab"] = next(iter(FORMS))
for tab, form in zip(bound("tab", st.tabs, list(FORMS)), FORMS.values()):
    with tab:
        choice = form()
        if choice is not None:  # loaded here, so a problem shows in the tab that asked for it
            bar, cb = progress_bar("Loading data")  # texts are embedded here: that can take minutes
            try:
                with st.spinner("Loading data…"):
                    new_train = scan_of(choice).splits(cb).train
                # a model that cannot take the new data is not carried over: the data kind's default replaces it
                choose_data(choice, None if model_fits(model_config(), new_train) else default_model(new_train))
            except OgdashError as e:
                error(e)
            finally:
                bar.empty()

scan = active_scan()
splits = loaded(scan)
if splits is None:
    st.stop()
train = splits.train
data_summary(splits)

# ------------------------------------------------------------------ model
st.divider()
st.subheader("Model")
mcfg = dict(model_config())
kinds = model_kinds(train)  # only architectures that can take this data are offered
kind = st.selectbox("Architecture", kinds, index=kinds.index(mcfg["kind"]) if mcfg.get("kind") in kinds else 0,
                    format_func={"logreg": "Logistic regression", "mlp": "MLP", "cnn": "Small CNN (images)",
                                 "paper_mlp": "Paper's 2-2-2-1 MLP (binary)",
                                 "torchvision": "torchvision architecture + your weights",
                                 "custom": "Your own network (package.module:factory) + your weights"}.get)
c1, c2, c3 = st.columns(3)
new = {"kind": kind}
if kind in ("torchvision", "custom"):
    new.update(your_network_form(mcfg, kind, c1, c2, c3))
else:
    if kind == "mlp":
        widths = c1.text_input("Hidden widths", ",".join(map(str, mcfg.get("hidden", (16, 16)))))
        try:
            new["hidden"] = tuple(int(w) for w in widths.split(",") if w.strip())
            if not new["hidden"] or min(new["hidden"]) < 1:
                raise ValueError(widths)
        except ValueError:
            st.error("Hidden widths are comma-separated positive integers, like 16,16.")
            st.stop()
    if kind in SCALED_KINDS and train.kind != "image" and not c1.checkbox(
            "Scale feature columns", mcfg.get("scale", True), help="standardise each column with the training "
            "set's mean and standard deviation (stored with the model), so raw and z-scored tables train alike"):
        new["scale"] = False
    epochs = c2.number_input("Epochs (0 = default)", 0, 10_000, int(mcfg.get("epochs") or 0))
    new["epochs"] = int(epochs) or None
    new["seed"] = int(c3.number_input("Seed (initialisation)", 0, 10_000, int(mcfg.get("seed", 0))))
    st.caption(training_budget(model_spec(new), train.n))

loads = kind in ("torchvision", "custom") and not new.get("new_head")  # your network as it is: nothing to train
if st.button("Load model" if loads else "Train model", type="primary"):
    previous = st.session_state.get("model_config")
    bar, cb = progress_bar("Loading" if loads else "Training")
    try:
        if kind in ("torchvision", "custom"):
            new = checked_network(new)
        st.session_state["model_config"] = new
        active_scan().model(progress=cb)
        st.rerun()  # the sidebar and the URL name the new model at once
    except OgdashError as e:
        # a model that failed to train or load never becomes the active one: the previous one stays
        st.session_state["model_config"] = previous
        error(e)
    finally:
        bar.empty()

try:
    model = scan.model(compute=False)
except OgdashError as e:
    error(e)
    model = None
if model is None:
    st.info("No trained model for this data yet: press **Train model** (it is cached on disk for next time).")
    st.stop()
summary = scan.summary()
c1, c2 = st.columns([1, 2])
c1.metric("Train accuracy (given labels)", f"{summary['train']:.1%}")
c1.metric("Test accuracy", f"{summary['test']:.1%}")
c2.plotly_chart(plots.confusion_heatmap(summary["confusion"], train.classes), width="stretch")
if (scaled := scaling_of(model)) is not None:
    st.caption(f"Inputs standardised with the training set's statistics ({len(scaled.mean)} columns; means "
               f"{scaled.mean.min():.3g} to {scaled.mean.max():.3g}, standard deviations {scaled.scale.min():.3g} to "
               f"{scaled.scale.max():.3g}), stored with the model.")
st.page_link("views/gradient_space.py", label="Next: gradient space", icon=":material/arrow_forward:")
