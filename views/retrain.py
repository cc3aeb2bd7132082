"""Trim & retrain: compare each fix of the flags with a control of its own kind over several seeds."""
import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import plots
from dashboard.escape import error
from dashboard.scan import active_scan, loaded, model_spec
from dashboard.state import (
    budget_words,
    decisions_path,
    disk_cache,
    memo,
    model_config,
    progress_bar,
    view,
    whole_table,
)
from ogdash.core.cache import cache_key
from ogdash.core.errors import OgdashError
from ogdash.pipeline import DETECTORS
from ogdash.retrain import (ACTIONS, NONE, RANDOM, RESTORED, SHORT, compare, control_cell, decisions_fix,
                            fixes_from_flags, restored)
from ogdash.review import DecisionStore

st.title("Trim & retrain")
st.markdown("What is a fix worth? Each fix is retrained from the **same initial weights** for the **same number of "
            "steps** as the unchanged data, seed by seed, and measured on the **untouched test set**, beside a "
            "**control of its own kind**: as many random samples removed, or as many random samples set to their "
            "suggested label. A fix is worth something only if it beats its control.")

scan = active_scan()
splits = loaded(scan)
if splits is None or scan.model(compute=False) is None:
    st.info("Train a model on the **Data & model** page first.")
    st.stop()
mcfg = model_config()
tune = None
if mcfg["kind"] in ("torchvision", "custom"):  # your network: every retrain starts from your weights
    tune = st.radio("Fine-tune", ["last", "all"], horizontal=True,
                    format_func={"last": "last layer (on the frozen backbone's features, fast)",
                                 "all": "all layers (slow on a CPU)"}.get,
                    help="Every arm, the unchanged data included, starts from your weights and trains the same "
                         "steps with the same seed's batch order.")
train = splits.train
try:
    grads = scan.gradients(compute=False)  # the flags follow the detector and budget in the page's address
    current = DecisionStore(decisions_path()).current(train.fingerprint())
except OgdashError as e:
    error(e)
    st.stop()
v = view()

fixes, P = [], None
if grads is None:
    st.info("Extract gradients on **Gradient space** to compare fixes of the detector's flags; reviewed decisions "
            "can be compared now.")
else:
    flags, P = scan.flags(), scan.probabilities()
    st.markdown(f"**The flags:** the top {int(flags.sum())} by {DETECTORS[v['detector']].split(' (')[0]} at "
                f"{budget_words()} (change both on Gradient space). A suggested label comes from a model that never "
                "saw the sample's label; a flagged sample whose suggestion is its given label is left as it is by the "
                "relabel fixes.")
    c1, c2 = st.columns([3, 1])
    actions = c1.multiselect("Fixes of the flags", list(ACTIONS), default=list(ACTIONS), format_func=SHORT.get,
                             help="; ".join(f"{SHORT[a]}: {ACTIONS[a]}" for a in ACTIONS))
    threshold = c2.slider("Sure enough to relabel", 0.3, 0.95, 0.5, 0.05, help="for the third fix: relabel a flagged "
                          "sample when its suggestion has at least this probability, remove it otherwise")
    fixes = fixes_from_flags(train, flags, P.argmax(1), P.max(1), threshold, actions)
if len(current):
    rel = current[current["decision"] == "relabel"]
    decisions = decisions_fix(current.loc[current["decision"] == "remove", "sample_id"].astype(int),
                              {int(r.sample_id): int(r.new_label) for r in rel.itertuples()})
    if (decisions.remove or decisions.relabel) and st.checkbox(
            f"Also your reviewed decisions ({len(decisions.remove)} removals, {len(decisions.relabel)} relabels)",
            value=True):
        fixes.append(decisions)
known = train.truth_known and bool(train.noisy.any())
if known and st.checkbox("Also restore every flipped label", value=True, key="retrain_reference",
                         help="The true labels are known here (injected noise): the noise-free model says what the "
                              "noise costs, and so the most any fix could win back."):
    fixes.append(restored(train))

seconds = scan.train_seconds()  # arms: the baseline, each fix, a control of each
fit_in_a_minute = 3 if seconds is None else int(np.clip(60 // ((1 + 2 * len(fixes)) * seconds), 3, 10))
seeds = st.slider("Seeds", 1, 10, fit_in_a_minute, help="each seed: the same initialisation for every fix; at "
                  "least 3 seeds are needed to tell a fix from chance")
seed0 = int(mcfg.get("seed", 0))
seed_list = list(range(seed0, seed0 + seeds))
# a relabel's control sets random samples to their suggested label: the held-out one, else the model's own guess
suggested = (P.argmax(1) if P is not None else scan.predicted()) if fixes else None
key = cache_key("compare", scan.data_key, scan.model_key, tune,
                [(f.name, f.remove, sorted(f.relabel.items())) for f in fixes], seed_list,
                None if suggested is None else hashlib.sha256(suggested.tobytes()).hexdigest())
result = memo(key)
if st.button("Retrain", type="primary", disabled=not fixes):
    bar, cb = progress_bar("Retraining")
    try:
        result = memo(key, lambda: compare(splits, model_spec(mcfg, tune), fixes, seed_list, disk_cache(), cb,
                                           suggested=suggested))
    except OgdashError as e:
        error(e)
    bar.empty()
if result is None:
    st.stop()

rows = result.to_rows()
one = len(result.seeds) == 1
shown = sorted((r for r in rows if r["control"]), key=lambda r: -r["accuracy_mean"])  # the fixes, best first
for i, (r, verdict) in enumerate((r, result.verdict(r["action"])) for r in shown):  # every fix gets a verdict
    (st.success if verdict.startswith("Beat") else st.warning)(f"**{'Best fix, ' * (i == 0)}{r['label']}:** {verdict}")
if any(r["action"] == RESTORED for r in rows):
    st.info(result.verdict(RESTORED))
base = result.row(NONE).accuracy
trained = scan.accuracy()
st.markdown(f"**The baseline** is the unchanged data retrained here on seeds {result.seeds}: test accuracy "
            f"{100 * base.mean():.1f}%" + ("" if one else f" ± {100 * base.std():.1f} (mean ± std over seeds)")
            + "; every 'vs baseline' compares with it, seed by seed. Data & model's "
            f"{100 * trained:.1f}% is one model, seed {seed0}"
            + (f" (retrained here: {100 * base[0]:.1f}%)." if result.seeds[0] == seed0 else "."))
table = pd.DataFrame({
    "fix": [r["label"] for r in rows],
    "removed": [r["n_removed"] for r in rows], "relabelled": [r["n_relabelled"] for r in rows],
    "test accuracy (%)": [f"{100 * r['accuracy_mean']:.1f}" + ("" if one else f" ± {100 * r['accuracy_std']:.1f}")
                          for r in rows],
    "vs baseline (points)": ["" if r["action"] == NONE else f"{100 * r['change_mean']:+.1f}" for r in rows],
    "control (random samples)": [control_cell(result.row(r["control"])) if r["control"] else "" for r in rows],
    "vs control (points)": [f"{100 * result.paired(r['action'], RANDOM).mean():+.1f}" if r["control"] else ""
                           for r in rows],
})
if train.truth_known:
    table["truly mislabeled touched"] = ["" if r["truly_noisy"] is None else str(r["truly_noisy"]) for r in rows]
    table["relabelled correctly"] = ["" if r["corrected"] is None else str(r["corrected"]) for r in rows]
whole_table(table)
start = (f"every model started from your weights ({mcfg['arch']}) and fine-tuned "
         f"{'its last layer' if tune == 'last' else 'all layers'}" if tune else "every model trained")
st.caption(f"Seeds {result.seeds}; {start} for {result.steps} steps; {len(rows) * len(result.seeds)} runs"
           f"{f', {result.stacked} of them together' if result.stacked else ''} in {result.seconds:.0f} s. "
           + ("One seed: no spread measured, so differences may be chance." if one else
           "Mean ± std over seeds; 'vs control' compares each seed's fix with the same seed's control: the same "
           "change on as many random samples (drawn anew for each seed)."))

names = {r["action"]: r["label"] for r in rows if r["action"] != NONE}
pick = st.selectbox("Per class, and the samples it touched", list(names), format_func=names.get)
row = result.row(pick)
st.plotly_chart(plots.accuracy_change(np.nanmean(result.row(NONE).per_class, 0), np.nanmean(row.per_class, 0),
                                      train.classes), width="stretch")
if row.touched:
    pos = train.positions(np.asarray(row.touched, dtype=np.int64))
    drawn = " (the first seed's draw)" if pick.startswith(RANDOM) else ""
    with st.expander(f"The {len(pos)} samples it touched{drawn}"):
        st.dataframe({"id": train.ids[pos], "source": [train.source(p) for p in pos],
                      "given": [train.classes[c] for c in train.y[pos]],
                      "change": ["removed" if i in set(row.touched[:row.n_removed]) else "relabelled"
                                 for i in train.ids[pos].tolist()]}, hide_index=True, width="stretch")
