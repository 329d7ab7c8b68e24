"""Running a study: the launcher, Ray, one trial's task, torchrun, the tokenizer stage, the
launch lock and the progress line."""
