import numpy as np
import streamlit as st

from ogdash.errors import OgdashError
from ogdash.retrain import trim_and_retrain
from ogdash.review import DecisionStore
from ogdash.ui import plots
from ogdash.ui.state import (active_flags, active_model, active_splits, data_config, decisions_path, disk_cache, key_of,
                             memo, model_config, model_key, model_spec, progress_bar, view)


def spread(std: float, seeds) -> str:
    return "one seed: no spread measured" if len(seeds) == 1 else f"± {std:.1%} (std over {len(seeds)} seeds)"


st.title("Trim & retrain")
st.markdown("What is the trim worth? The model is retrained from the **same initial weights and seed** with and "
            "without the trim, and both are measured on the **untouched test set**.")

splits = active_splits()
if splits is None or active_model() is None:
    st.info("Train a model on the **Data & model** page first.")
    st.stop()
mcfg = model_config()
if mcfg["kind"] == "torchvision":
    st.warning("Retraining needs a model from the zoo; a torchvision model with your weights is only analysed here.")
    st.stop()
train = splits.train
try:
    flagged = active_flags()  # from the detector and budget in the page's address: no other page need be open
    current = DecisionStore(decisions_path()).current(train.fingerprint())
except OgdashError as e:
    st.error(str(e))
    st.stop()
v = view()
flag_ids = [] if flagged is None else train.ids[flagged[1]].tolist()
options = {"flags": f"Top-k flags of {v['detector']} at budget {v['budget']:.0%} "
                    + (f"({len(flag_ids)} samples)" if flagged else "(extract gradients on Gradient space first)"),
           "decisions": f"Reviewed decisions ({len(current)} so far: removals, and relabels applied)"}
what = st.radio("Trim", list(options), format_func=options.get)
seconds = memo(key_of("train_seconds", model_key()))
default_seeds = 3 if seconds is None or 6 * seconds < 60 else 1  # three seeds where the six runs take under a minute
seeds = st.slider("Seeds", 1, 5, default_seeds,
                  help="mean ± std over this many seeds (each seed: same initialisation before and after)")

if what == "flags":
    remove, relabel = flag_ids, {}
else:
    remove = current.loc[current["decision"] == "remove", "sample_id"].astype(int).tolist() if len(current) else []
    rel = current[current["decision"] == "relabel"] if len(current) else current
    relabel = {int(r.sample_id): int(r.new_label) for r in rel.itertuples()}
st.caption(f"{len(remove)} samples removed, {len(relabel)} relabelled.")
known = train.truth_known and bool(train.noisy.any())
reference = known and st.checkbox(
    "Also retrain with every flipped label restored", key="retrain_reference",
    help="The true labels are known here (injected noise), so the noise-free model can be measured: it says what "
         "the noise costs, and so the most any trim could win back.")

seed_list = list(range(int(mcfg.get("seed", 0)), int(mcfg.get("seed", 0)) + seeds))
key = key_of("retrain", data_config(), mcfg, sorted(remove), sorted(relabel.items()), seeds)
ref_key = key_of("retrain-reference", data_config(), mcfg, seeds)
report, ref = memo(key), memo(ref_key)
if st.button("Retrain", type="primary", disabled=not (remove or relabel)):
    bar, cb = progress_bar("Retraining")
    try:
        report = memo(key, lambda: trim_and_retrain(splits, model_spec(mcfg), remove, relabel, seeds=seed_list,
                                                    cache=disk_cache(), progress=cb))
        if reference:
            truth = {int(i): int(t) for i, t in zip(train.ids[train.noisy], train.y_true[train.noisy])}
            ref = memo(ref_key, lambda: trim_and_retrain(splits, model_spec(mcfg), relabel=truth, seeds=seed_list,
                                                         cache=disk_cache(), progress=cb))
    except OgdashError as e:
        st.error(str(e))
    bar.empty()

if report is not None:
    s = report.summary
    c = st.columns(4)
    c[0].metric("Test accuracy before", f"{s['accuracy_before']:.1%}", help=spread(s["accuracy_before_std"], report.seeds))
    c[1].metric("Test accuracy after", f"{s['accuracy_after']:.1%}",
                delta=f"{(s['accuracy_after'] - s['accuracy_before']) * 100:+.1f} pts")
    c[2].metric("Removed / relabelled", f"{report.n_removed} / {report.n_relabelled}")
    if report.removed_truly_noisy is not None:
        c[3].metric("Removed that were truly mislabeled", f"{report.removed_truly_noisy} / {report.n_removed}")
    if len(report.seeds) == 1:
        st.caption(f"before {s['accuracy_before']:.3f}, after {s['accuracy_after']:.3f} (seed {report.seeds[0]}; "
                   f"one seed: no spread measured, so the difference may be chance); {report.seconds:.1f} s")
    else:
        st.caption(f"before {s['accuracy_before']:.3f} ± {s['accuracy_before_std']:.3f}, "
                   f"after {s['accuracy_after']:.3f} ± {s['accuracy_after_std']:.3f} (mean ± std over seeds "
                   f"{report.seeds}); {report.seconds:.1f} s")
    if reference and ref is not None:
        r = ref.summary
        st.metric("With every flipped label restored", f"{r['accuracy_after']:.1%}",
                  delta=f"{(r['accuracy_after'] - r['accuracy_before']) * 100:+.1f} pts",
                  help=f"{spread(r['accuracy_after_std'], ref.seeds)}; the same seeds and initialisation, nothing removed: what "
                       "the label noise costs this model. When it is close to 'before', the noise does little harm "
                       "and removing samples mostly removes data.")
    st.plotly_chart(plots.accuracy_change(np.nanmean(report.per_class_before, 0), np.nanmean(report.per_class_after, 0),
                                          train.classes), width="stretch")
