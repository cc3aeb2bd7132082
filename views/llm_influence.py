"""LLM influence: which fine-tuning prompts influence an unseen test prompt (the paper's Section 7)."""
from dataclasses import replace

import streamlit as st

from dashboard.escape import error, md
from dashboard.state import data_root, disk_cache, progress_bar
from ogdash.core.errors import OgdashError
from ogdash.data.files import resolve_under
from ogdash.data.prompts import TASKS
from ogdash.experiments.llm_gradients import LAYERS
from ogdash.experiments.llm_prompts import METHODS, analyze, finetuned_model
from ogdash.models.llm import LOSS_ON, MODEL_CHOICES, FinetuneSettings, LoraSettings
from ogdash.models.prompt_lm import complete
from views import llm_influence_parts as ui

st.title("LLM influence")
MODES = {"benchmark": "A built-in benchmark", "files": "Your data (your files, your model)"}
if st.radio("Data", list(MODES), format_func=MODES.get, horizontal=True, key="llm_mode") == "files":
    from views.llm_influence_files_parts import render

    render()
    st.stop()
st.markdown(
    "Fine-tune a language model with LoRA on a prompt benchmark (10 task classes, 90 training and 10 test prompts "
    "each), take every prompt's LoRA gradient, and score how much each training prompt influences each test prompt. "
    "A good method ranks the training prompts of the test prompt's own class first. "
    "**Influence: higher = more influential** (for every method on this page)."
)

with st.form("llm_run"):
    c1, c2 = st.columns(2)
    task = c1.selectbox("Benchmark", list(TASKS), format_func=TASKS.get)
    model_kind = c2.selectbox("Model", [*MODEL_CHOICES, "folder"],
                              format_func=lambda k: MODEL_CHOICES.get(k, "a local Hugging Face model folder"))
    folder = st.text_input("Model folder (for a local model)", placeholder="models/my-llama",
                           help=f"Resolved under the data root {data_root()}.")
    methods = st.multiselect("Methods", list(METHODS), default=list(METHODS), format_func=METHODS.get)
    layers = st.radio("Gradients of", list(LAYERS), format_func=LAYERS.get, horizontal=True)
    with st.expander("Settings (CPU defaults)"):
        a1, a2, a3 = st.columns(3)
        per_class = a1.number_input("Training prompts per class", 2, 90, 90)
        test_per_class = a2.number_input("Test prompts per class", 1, 10, 10)
        seed = a3.number_input("Seed", 0, 10_000, 0)
        b1, b2, b3 = st.columns(3)
        epochs = b1.number_input("Fine-tuning epochs", 0, 50, FinetuneSettings().epochs)
        lora_layers = b2.number_input("LoRA in the last N layers (0 = all)", 0, 200, LoraSettings().layers)
        proj_dim = b3.number_input("Project gradients to (0 = no projection)", 0, 100_000, 0)
        loss_on = st.radio("Loss over", list(LOSS_ON), format_func=LOSS_ON.get)
        st.caption("LoRA rank 8, alpha 32, dropout 0.05 on q_proj and v_proj; batch 16, learning rate 1e-3, "
                   "at most 128 tokens per prompt. The layers below the LoRA layers are frozen, so they run "
                   "once per prompt and are reused by fine-tuning and the gradient pass.")
    run = st.form_submit_button("Run", type="primary")

if run:
    try:
        spec = model_kind if model_kind != "folder" else str(resolve_under(data_root(), folder.strip() or "."))
        if not methods:
            raise OgdashError("Choose at least one method.")
        bar, report = progress_bar(TASKS[task])
        result = analyze(task, model=spec, methods=methods, layers=layers,
                         proj_dim=int(proj_dim) or None, per_class=int(per_class),
                         test_per_class=int(test_per_class), seed=int(seed),
                         lora=LoraSettings(layers=int(lora_layers) or None),
                         settings=replace(FinetuneSettings(seed=int(seed)), epochs=int(epochs), loss_on=loss_on),
                         cache=disk_cache(), progress=report)
        bar.empty()
        st.session_state["llm_result"] = result
    except OgdashError as e:
        error(e)

result = st.session_state.get("llm_result")
if result is None:
    st.info("Choose a benchmark and press **Run**. SmolLM2-135M takes several minutes per benchmark on a 2-core "
            "CPU the first time; every stage is cached on disk, so a rerun is instant.")
    st.stop()

b = result.benchmark
st.subheader(f"{b.title} · {md(result.model)}")
st.markdown("**Class detection**: per test prompt, the AUC of its influence row against *same class*, and the "
            "share of its top-k training prompts (k = the class size, 90 by default) that are of its class; "
            "mean ± std over test prompts. The published numbers come from the paper's Table 3, measured on "
            "**Llama-2-13B-chat**, a model 100× larger.")
st.dataframe(ui.metrics_table(result), hide_index=True, width="stretch")
with st.expander("Timings and settings"):
    st.dataframe(ui.timings_table(result), hide_index=True)
    losses = result.finetune.get("epoch_loss") or []
    plural_s = "s" if result.layers == "all" else ""
    st.caption(f"{result.grad_dim} gradient dimensions ({result.layers} LoRA layer{plural_s}"
               f"{', projected' if result.proj_dim else ''}); fine-tuning loss per epoch: "
               + (", ".join(f"{x:.3f}" for x in losses) or "none"))

method = st.radio("Method", list(result.matrices), format_func=METHODS.get, horizontal=True)
scale = st.radio("Colour scale", list(ui.SCALES), format_func=ui.SCALES.get, horizontal=True)
grid, by_class = st.tabs(["Test × training prompts", "Test × class"])
with grid:
    st.plotly_chart(ui.influence_heatmap(result, method, scale), width="stretch")
    if method == "oga":
        st.caption("Outlier Gradient scores a test prompt with one IsolationForest per class, so a row is constant "
                   "within each class block; the test × class view shows the same numbers per class.")
with by_class:
    st.plotly_chart(ui.class_heatmap(result, method, scale), width="stretch")

st.subheader("Drill down")
t = st.selectbox("Test prompt", ui.prompt_choices(result), format_func=lambda i: ui.prompt_label(result, i))
st.markdown(f"**Prompt:** {md(b.test.prompts[t])}")
st.markdown(f"**Expected completion:** {md(b.test.completions[t])}")


@st.cache_resource(show_spinner="Loading the fine-tuned model…", max_entries=1)
def _finetuned(_result, adapter_key: str):
    return finetuned_model(_result, disk_cache())


if st.button("Show the model's completion"):
    try:
        model, tok = _finetuned(result, result.adapter_key)
        st.session_state.setdefault("llm_completions", {})[(result.adapter_key, t)] = complete(model, tok,
                                                                                             b.test.prompts[t])
    except OgdashError as e:
        error(e)
said = st.session_state.get("llm_completions", {}).get((result.adapter_key, t))
if said is not None:
    st.markdown(f"**Model's completion:** {md(said)}")
k = st.slider("Top k", 1, 50, 10)
st.dataframe(ui.top_table(result, method, t, k), hide_index=True, width="stretch")
