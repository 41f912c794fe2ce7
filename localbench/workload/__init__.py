"""Layer 5a: the workload: exact-length prompt sets under the model's tokenizer (unique, code, prefix sets, chat
sessions, warm-ups), built once by the prompts stage and read by every measure stage."""
