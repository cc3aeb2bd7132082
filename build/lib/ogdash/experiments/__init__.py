"""The paper's studies on top of the library: the synthetic reproduction (Fig. 1, Table 1), text data selection,
and influence of LLM prompts (SmolLM2 + LoRA)."""
