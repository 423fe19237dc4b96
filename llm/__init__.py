"""LoRA training of causal LMs on GSM8K / MATH with the banditlab objective registry."""
