"""The synthetic demo page under AppTest: both datasets, every Table 1 row, and no retrain on a budget change."""
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.nav import PAGES, ROOT
from ogdash.core.errors import OgdashError
from ogdash.experiments import synthetic as study

PAGE = next(p.path for p in PAGES if p.title == "Synthetic demo")


@pytest.fixture
def fits(monkeypatch):
    """Short training for speed and a log of every model trained (its number of samples).

    Streamlit's caches are process-wide, so later tests reuse what earlier ones computed;
    the test that counts retrains clears them first.
    """
    import ogdash.pipeline as pipeline

    monkeypatch.setattr("views.synthetic_parts.EPOCHS", 60)
    calls = []
    real_fit = pipeline.fit
    monkeypatch.setattr(pipeline, "fit", lambda spec, X, *a, **k: calls.append(len(X)) or real_fit(spec, X, *a, **k))
    return calls


def page():
    return AppTest.from_file(str(ROOT / PAGE), default_timeout=240).run()


def table(at):
    return at.dataframe[-1].value  # Table 1 is the last dataframe on the page


def assert_every_method_row(df, model_row: str):
    labels = df["Method"].tolist()
    assert len(labels) == 1 + len(study.METHODS)
    assert labels[0].endswith("no trimming") and model_row in labels[0]
    for m, label in zip(study.METHODS, labels[1:]):
        assert label.startswith(m.label), (m.label, label)


def test_page_is_registered():
    assert (ROOT / PAGE).is_file()


def test_both_datasets_render_with_every_method_row(fits):
    at = page()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    df = table(at)
    assert_every_method_row(df, "MLP 16-16")
    assert df["Published: post-trim %"].iloc[0] == "90.0"
    assert df.set_index("Method").loc["Outlier Gradient (iForest)", "Published: detection %"] == "96.0"
    assert len(at.get("plotly_chart")) == 4  # Figure 1 E-H
    assert any("Figure 1 E-H" in s.value for s in at.subheader)

    at.radio(key="syn_dataset").set_value("blobs").run()
    assert not at.exception, at.exception
    df = table(at)
    assert_every_method_row(df, "logistic regression")
    assert df["Published: detection %"].eq("not published").all()
    assert any("Figure 1 A-D" in s.value for s in at.subheader)

    at.toggle(key="syn_predicted").set_value(True).run()  # the paper's released-code variant, named as such
    assert not at.exception
    assert "Normalized Margin (predicted labels)" in table(at)["Method"].tolist()


def test_budget_and_detector_changes_do_not_retrain(fits):
    import streamlit as st

    st.cache_data.clear()
    at = page()
    assert not at.exception
    n_train = 250
    assert fits.count(n_train) == 1  # the case's model, trained once
    retrains = len(fits)

    at.selectbox(key="syn_detector").set_value("l2").run()
    assert not at.exception
    assert len(fits) == retrains  # a detector change re-renders from cached scores: nothing trained

    at.slider(key="syn_budget").set_value(15).run()
    assert not at.exception
    assert fits.count(n_train) == 1  # the case's model is not retrained...
    assert all(n == n_train - round(0.15 * n_train) for n in fits[retrains:])  # ...only the trimmed sets are
    assert any("budget 15%" in s.value for s in at.subheader)

    seen = len(fits)
    at.slider(key="syn_budget").set_value(10).run()  # back to a budget seen before: everything cached
    assert not at.exception and len(fits) == seen


def test_trim_and_retrain_button(fits):
    at = page()
    at.button(key="syn_retrain_button").click().run()
    assert not at.exception, at.exception
    labels = {m.label: m.value for m in at.metric}
    assert "Test accuracy before" in labels and "Test accuracy after" in labels
    assert labels["Trimmed that were truly flipped"].endswith("of 25")
    assert fits.count(250) <= 1  # "before" is the case's model: trained at most once (cached on disk)


def test_page_through_the_app_navigation(fits):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("Synthetic demo")


def test_bad_input_shows_an_error_not_a_traceback(fits, monkeypatch):
    import streamlit as st

    st.cache_data.clear()

    def broken(*a, **k):
        raise OgdashError("training diverged at epoch 3; lower the learning rate.")

    monkeypatch.setattr(study, "analyse", broken)
    at = page()
    assert not at.exception
    assert "diverged" in at.error[0].value
