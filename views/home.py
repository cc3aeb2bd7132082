"""Home: what ogdash does and where to start."""
import streamlit as st

from dashboard.nav import existing_pages

st.title("ogdash")
st.markdown(
    """
**Find the training samples that hurt your model.**

ogdash implements *outlier gradient analysis* (Chhabra et al., "Efficiently Identifying
Detrimental Training Samples for Deep Learning Models"). Influence functions tell whether a
training sample helps or hurts a model, but they need the inverse Hessian. The paper's insight:
a sample's own loss gradient decides the sign of its influence, and harmful samples are a
minority, so they stand out as **outliers in gradient space**.

The workflow:
1. load a dataset and a model (or train one from the zoo);
2. extract every training sample's loss gradient (last layer by default: one forward pass);
3. score them with an outlier detector (IsolationForest, L1/L2 norm, OneClassSVM);
   **higher score = more detrimental**, everywhere in ogdash;
4. flag a budget (say the top 5%), review the suspects, and decide keep / remove / relabel;
5. trim and retrain, and compare test accuracy before and after on an untouched test set.
"""
)
st.subheader("Pages")
for page in existing_pages()[1:]:
    st.page_link(page.path, label=page.title, icon=page.icon)
    st.caption(page.blurb)
if len(existing_pages()) == 1:
    st.info("More pages arrive as they are built; the `ogdash` library and CLI work headless today: "
            "`ogdash scan --help`.")
